"""The experiment computed by Spark, finished by the router's own analysis.

The same three steps as :mod:`modelsplit.duckdb`, on Spark (PySpark; local mode or a cluster):

1. ``modelsplit report --config CONFIG --sql spark`` prints the reduction (one SQL query, the
   router's, in Spark SQL; README, "At scale");
2. Spark runs it over ``ms_lines(line, ord, event_id)``: record files (JSONL, rotated and gzipped
   siblings included; :func:`lines_from_files`) or the topic the Kafka sink writes
   (:func:`lines_from_kafka`, a batch read with Spark's Kafka source, the ``ce_id`` header as the
   event id), with ``ms_unit_hash`` registered (murmur3 of ``"modelsplit-unit:" + id``): the JVM
   function ``modelsplit.spark.UnitHash`` when its jar is on the classpath (``bash scripts/spark/fetch.sh``
   builds it into ``.cache/spark/lib``), else a Python UDF (the same hash, many times slower);
3. its rows (a few thousand, whatever the records) go to ``modelsplit report --totals -``, which
   rebuilds the router's accumulators from them and prints the analysis. Every statistic is the router's.

A record delivered twice (at-least-once: the same ``ce_id``) is counted once; a line that is not
JSON, of a schema this build does not read, or with fields nobody declared is ignored or read as
the report reads it, never a failed job.

Needs ``pyspark`` (clients/python/requirements-spark.txt; Java 17) and, for Kafka, the
``spark-sql-kafka-0-10`` jars of the same Spark version: ``bash scripts/spark/fetch.sh`` puts them in
``.cache/spark/lib`` with the unit hash's jar; give that directory as ``jars=`` or in
``MODELSPLIT_SPARK_JARS``.
"""

from __future__ import annotations

import glob
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .duckdb import _run, summary_from_totals, unit_hash
from .experiments import ConfigLike, RouterCommand, _config_path, router_command
from .records import PathsOrGlob, expand_paths

__all__ = ["experiment_summary", "reduce", "reduction_sql", "session", "register", "connector_jars",
           "lines_from_files", "lines_from_kafka", "unit_hash_function", "JVM_UNIT_HASH"]

#: The JVM class of the unit hash (scripts/spark/udf; built by scripts/spark/build-udf.sh).
JVM_UNIT_HASH = "modelsplit.spark.UnitHash"
#: Where :func:`register` says which unit hash it registered: ``"jvm"`` or ``"python"``.
_UNIT_HASH_CONF = "spark.modelsplit.unitHash"

#: ``ord`` of a line in a file: file index << 44 | Spark partition << 31 | row in the partition
#: (2^19 files, 2^13 splits of a file, 2^31 lines in a split). Of a message in a topic:
#: partition << 44 | offset.
_FILE_SHIFT = 44
_SPLIT_SHIFT = 31


def reduction_sql(config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None) -> str:
    """The reduction of ``config``'s experiments in Spark SQL, as the router writes it."""
    command = router_command(modelsplit_bin)
    with tempfile.TemporaryDirectory(prefix="modelsplit-") as tmp:
        return _run(command, ["report", "--config", _config_path(config, Path(tmp)), "--sql", "spark"])


def connector_jars(jars: Union[None, str, Sequence[str]] = None) -> list[str]:
    """The Kafka source's jars to hand Spark (``spark.jars``): the files of ``jars`` (a directory, a
    glob or a list; default ``$MODELSPLIT_SPARK_JARS``), less those pyspark already ships (its own
    Scala, Hadoop and compression libraries, whatever version the download had)."""
    if jars is None:
        jars = os.environ.get("MODELSPLIT_SPARK_JARS")
    if not jars:
        return []
    found: list[str] = []
    for item in [jars] if isinstance(jars, str) else list(jars):
        if os.path.isdir(item):
            found.extend(sorted(glob.glob(os.path.join(item, "*.jar"))))
        else:
            found.extend(sorted(glob.glob(item)) or [item])
    import pyspark

    shipped = {_artifact(p) for p in glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar"))}
    return [str(Path(p).resolve()) for p in found if _artifact(p) not in shipped]


def _artifact(path: str) -> str:
    """A jar's artifact name without its version: ``kafka-clients-3.9.1.jar`` -> ``kafka-clients``."""
    name = os.path.basename(path)[: -len(".jar")]
    parts = name.split("-")
    while len(parts) > 1 and parts[-1][:1].isdigit():
        parts.pop()
    return "-".join(parts)


def session(*, master: str = "local[2]", jars: Union[None, str, Sequence[str]] = None, app_name: str = "modelsplit",
            conf: Optional[dict[str, str]] = None) -> Any:
    """A SparkSession for the reduction (``getOrCreate``: an active session is reused as it is),
    with the Kafka source's jars (:func:`connector_jars`) on its classpath and no UI; then
    :func:`register`."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name).config("spark.ui.enabled", "false")
    if master.startswith("local"):
        # Without the unit hash's jar, the hash runs in Python workers: this interpreter, where
        # modelsplit is installed (on a cluster, the workers' Python needs the modelsplit package too).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    found = connector_jars(jars)
    if found:
        builder = builder.config("spark.jars", ",".join(found))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    register(spark)
    return spark


def register(spark: Any) -> Any:
    """Registers ``ms_unit_hash(STRING) -> BIGINT`` (the router's unit hash) in ``spark``, and reads
    a record with a duplicated key as the router does (the last value) instead of as not JSON.

    The hash is the JVM function :data:`JVM_UNIT_HASH` when its class is on the classpath (its jar
    in ``jars=``: ``scripts/spark/fetch.sh`` builds it), else a Python UDF, row at a time in Python
    workers (each of which needs the modelsplit package): the same values, many times the CPU.
    :func:`unit_hash_function` says which one a session has."""
    from pyspark.sql.types import LongType

    try:
        spark.udf.registerJavaFunction("ms_unit_hash", JVM_UNIT_HASH, LongType())
        used = "jvm"
    except Exception as err:  # noqa: BLE001 - Py4J/AnalysisException when the class is not there
        if JVM_UNIT_HASH not in str(err) and "ClassNotFound" not in str(err):
            raise
        spark.udf.register("ms_unit_hash", _unit_hash_or_null, "bigint")
        used = "python"
    spark.conf.set(_UNIT_HASH_CONF, used)
    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")
    return spark


def unit_hash_function(spark: Any) -> Optional[str]:
    """Which unit hash :func:`register` registered in ``spark``: ``"jvm"`` (the JVM function, its jar
    found) or ``"python"`` (the Python UDF fallback); None before it ran."""
    return spark.conf.get(_UNIT_HASH_CONF, None)


def _unit_hash_or_null(unit: Optional[str]) -> Optional[int]:
    return None if unit is None else unit_hash(unit)


def lines_from_files(spark: Any, records: PathsOrGlob) -> Any:
    """``ms_lines`` over JSONL record files (paths or a glob; rotated siblings included): each line
    as text, ``ord`` increasing in file order and line order (the order the report replays them
    in), ``event_id`` a line's ``ce_id`` when it has one (a topic exported with its ids)."""
    from pyspark.sql import functions as F

    paths = [str(p) for p in expand_paths(records)]
    frames = []
    for i, path in enumerate(paths):
        mid = F.monotonically_increasing_id()
        # Spark numbers the rows of partition p from p << 33; a file's splits are its partitions in offset order.
        ord_ = (F.lit(i).cast("bigint") * (1 << _FILE_SHIFT) + F.shiftright(mid, 33) * (1 << _SPLIT_SHIFT)
                + mid.bitwiseAND(F.lit((1 << 33) - 1)))
        frames.append(spark.read.text(path).select(F.col("value").alias("line"), ord_.alias("ord")))
    if not frames:
        raise FileNotFoundError(f"no record file matches {records!r}")
    lines = frames[0]
    for frame in frames[1:]:
        lines = lines.unionAll(frame)
    return lines.select("line", "ord", F.get_json_object("line", "$.ce_id").alias("event_id"))


def lines_from_kafka(spark: Any, bootstrap_servers: str, topic: str, *, options: Optional[dict[str, str]] = None) -> Any:
    """``ms_lines`` over the topic the Kafka sink writes, read as it stands (a batch read, earliest
    to latest offsets): each message's value as the line, ``ord`` its partition and offset (the
    order the router wrote them in, per partition), ``event_id`` its CloudEvents ``ce_id`` header.
    ``options`` go to Spark's Kafka source (``kafka.security.protocol``, ``startingOffsets``, ...)."""
    from pyspark.sql import functions as F

    reader = (spark.read.format("kafka").option("kafka.bootstrap.servers", bootstrap_servers).option("subscribe", topic)
              .option("startingOffsets", "earliest").option("endingOffsets", "latest").option("includeHeaders", "true"))
    for key, value in (options or {}).items():
        reader = reader.option(key, value)
    raw = reader.load()
    ce_id = F.expr("try_element_at(filter(headers, h -> h.key = 'ce_id'), 1).value")
    return raw.select(F.col("value").cast("string").alias("line"),
                      (F.col("partition").cast("bigint") * (1 << _FILE_SHIFT) + F.col("offset")).alias("ord"),
                      ce_id.cast("string").alias("event_id"))


def reduce(lines: Any, config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None) -> list[dict[str, Any]]:
    """The reduction's rows over ``lines`` (a DataFrame of ``line, ord, event_id``, as
    :func:`lines_from_files` and :func:`lines_from_kafka` return), as dicts without null columns."""
    spark = lines.sparkSession
    register(spark)
    sql = reduction_sql(config, modelsplit_bin=modelsplit_bin)
    lines.createOrReplaceTempView("ms_lines")
    rows = []
    for row in spark.sql(sql).collect():
        out = {}
        for k, v in row.asDict().items():
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                continue
            out[k] = v
        rows.append(out)
    return rows


def experiment_summary(records: Optional[PathsOrGlob], config: ConfigLike, *, kafka: Optional[str] = None,
                       topic: Optional[str] = None, spark: Any = None, jars: Union[None, str, Sequence[str]] = None,
                       kafka_options: Optional[dict[str, str]] = None,
                       modelsplit_bin: Optional[RouterCommand] = None) -> list[dict[str, Any]]:
    """The A/B statistics of every route of ``config`` that declares metrics, reduced by Spark over
    the record files ``records`` or, with ``records=None``, over the Kafka topic ``topic`` at the
    brokers ``kafka``: the same list as :func:`modelsplit.experiment_summary` returns for the same
    records. ``spark``: a session to use (default :func:`session` in local mode, with ``jars``)."""
    if (records is None) == (kafka is None):
        raise ValueError("give record files (records) or a topic (kafka= and topic=), one of the two")
    if kafka is not None and not topic:
        raise ValueError("kafka= needs topic=: the topic the Kafka sink writes (record_sinks: kafka: topic)")
    spark = spark if spark is not None else session(jars=jars)
    if records is not None:
        lines = lines_from_files(spark, records)
    else:
        lines = lines_from_kafka(spark, kafka, str(topic), options=kafka_options)
    return summary_from_totals(reduce(lines, config, modelsplit_bin=modelsplit_bin), config, modelsplit_bin=modelsplit_bin)
