#!/usr/bin/env bash
# Builds the router's unit hash as a JVM Spark function (scripts/spark/udf/src/modelsplit/spark/UnitHash.java)
# into LIB/modelsplit-unit-hash.jar (LIB: the first argument, default .cache/spark/lib), compiled by javac
# against the jars pyspark ships (site-packages/pyspark/jars of $PYTHON, default python3). Idempotent: a jar
# built from the same source and pyspark is left alone. modelsplit.spark.session() puts it on the classpath
# with the lib directory and register() uses it; without it, the unit hash runs as a Python UDF (slower).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${1:-$root/.cache/spark/lib}"
src="$here/udf/src"
command -v javac >/dev/null || { echo "javac is not installed (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
command -v jar >/dev/null || { echo "jar is not installed (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
jars="$("${PYTHON:-python3}" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))' 2>/dev/null)" \
  || { echo "pyspark is not importable by ${PYTHON:-python3} (set PYTHON to the interpreter that has it)" >&2; exit 1; }
stamp="$lib/.unit-hash-$( (find "$src" -name '*.java' -print0 | sort -z | xargs -0 cat; ls "$jars" | grep '^spark-sql-api') | sha256sum | cut -c1-16)"
out="$lib/modelsplit-unit-hash.jar"
if [ -f "$stamp" ] && [ -f "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$lib"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
javac -nowarn --release 17 -cp "$jars/*" -d "$build/classes" $(find "$src" -name '*.java')
jar --create --file "$build/unit-hash.jar" -C "$build/classes" .
rm -f "$lib"/.unit-hash-*
mv "$build/unit-hash.jar" "$out"
touch "$stamp"
echo "$out"
