// Used by test_spark_unit_hash.py: prints modelsplit.spark.UnitHash of each JSON line's "id", one a line.
// Jackson (in pyspark's jars) reads "\ud800"-style escapes into the Java String as they stand, lone
// surrogates included, as JavaScript's JSON.parse does; run with the single-file source launcher.
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import modelsplit.spark.UnitHash;

public class UnitHashCheck {
  public static void main(String[] args) throws Exception {
    ObjectMapper json = new ObjectMapper();
    UnitHash udf = new UnitHash();
    StringBuilder out = new StringBuilder();
    for (String line : Files.readAllLines(Path.of(args[0]))) {
      if (!line.isEmpty()) {
        out.append(udf.call(json.readTree(line).get("id").asText())).append('\n');
      }
    }
    System.out.print(out);
  }
}
