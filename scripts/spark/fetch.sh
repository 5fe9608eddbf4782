#!/usr/bin/env bash
# Fetches the Kafka source of Spark (spark-sql-kafka) from Maven Central (pom.xml beside this file) into
# .cache/spark/lib, with Maven's local repository under .cache/spark/m2: nothing outside the
# repo's ignored .cache/. Idempotent: a complete copy is left alone. Then builds the router's unit hash as a
# JVM function into the same directory (build-udf.sh beside this file; needs javac and pyspark, else
# Spark runs the Python UDF and this says so). Prints the lib directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$root/.cache/spark"
lib="$cache/lib"
stamp="$lib/.complete-$(cat "$here/pom.xml" "$here/settings.xml" | sha256sum | cut -c1-16)"

if [ ! -f "$stamp" ]; then
  command -v mvn >/dev/null || { echo "mvn is not installed (apt-get install maven)" >&2; exit 1; }
  command -v java >/dev/null || { echo "java is not installed (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
  rm -rf "$lib"
  mkdir -p "$lib"
  mvn -q -B -U -s "$here/settings.xml" -f "$here/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$stamp"
fi
bash "$here/build-udf.sh" "$lib" >/dev/null \
  || echo "the unit hash's JVM function could not be built: Spark will hash units in a Python UDF" >&2
echo "$lib"
