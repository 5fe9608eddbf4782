"""The unit hash Spark runs in the JVM (scripts/spark/udf, modelsplit.spark.UnitHash, registered as
``ms_unit_hash`` by modelsplit.spark.register when its jar is on the classpath) is the router's:
over random ids (ASCII, other BMP characters, astral characters as surrogate pairs, lone
surrogates) written as JSON lines, the class's value of each (in a plain JVM, UnitHashCheck.java)
equals the router's own unitHash (node, dist/experiment/unit.js, JSON.parse over the same lines)
and the Python client's unit_hash; in a Spark session, ``ms_unit_hash`` over the lines read as the
reduction reads a record is the same function. Spark's own strings are UTF-8, so a lone surrogate
reaches any Spark function as '?' (asserted, so a change is seen). Without the class, register
falls back to the Python UDF and says so. Skipped, saying why, without pyspark, Java or javac."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -r clients/python/requirements-spark.txt)")
for tool in ("java", "javac", "jar"):
    if shutil.which(tool) is None:
        pytest.skip(f"the JVM unit hash needs {tool} (apt-get install openjdk-17-jdk-headless)", allow_module_level=True)

from modelsplit import spark as ms  # noqa: E402
from modelsplit.duckdb import unit_hash  # noqa: E402
from support import REPO  # noqa: E402

_ALPHABETS = [
    "abcXYZ019-_:./ ",
    "éßøñçü€£¥",  # two and three UTF-8 bytes
    "中文日本語한국어",
    "\U0001F642\U0001F680\U00010348\U0010FFFF",  # astral: a surrogate pair each in UTF-16
    "\ud800\udbff\udc00\udfff",  # halves of pairs, alone or in the wrong order
]


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["", "u1", "user-0", "\ud83d", "\ude42", "\ude42\ud83d", "a\ud800b", "x" * 300 + "\ud800",
           "\U0001F642" * 70]
    while len(out) < n:
        k = rng.choice([1, 2, 3, 5, 8, 13, 40, 120])
        out.append("".join(rng.choice(rng.choice(_ALPHABETS)) for _ in range(k)))
    return out


@pytest.fixture(scope="module")
def jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("spark-lib")
    done = subprocess.run(["bash", str(REPO / "scripts" / "spark" / "build-udf.sh"), str(lib)], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.is_file() and path.parent == lib
    return path


@pytest.fixture(scope="module")
def spark(jar: Path) -> Iterator[Any]:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    s = ms.session(master="local[1]", jars=str(jar), conf={"spark.sql.shuffle.partitions": "1", "spark.driver.memory": "512m"})
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def _as_javascript(text: str) -> str:
    """``text`` as a JavaScript string holds it: adjacent halves join into one code point, a lone
    half is U+FFFD when encoded (the ids here hold no U+FFFD of their own)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _lone_surrogate(text: str) -> bool:
    return "\ufffd" in _as_javascript(text)


def _write_ids(path: Path, ids: list[str]) -> Path:
    # ensure_ascii: every non-ASCII character as a \u escape, lone surrogates included, as a record may carry them
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in ids), encoding="ascii")
    return path


def _jvm_hashes(jar: Path, lines: Path) -> list[int]:
    """UnitHash.call of each line's ``id`` in a plain JVM, the id read by Jackson (lone surrogates kept)."""
    import pyspark

    classpath = os.pathsep.join([str(jar), os.path.join(os.path.dirname(pyspark.__file__), "jars", "*")])
    done = subprocess.run(["java", "-cp", classpath, str(Path(__file__).parent / "UnitHashCheck.java"), str(lines)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [int(x) for x in done.stdout.split()]


def _router_hashes(cli: Path, lines: Path) -> list[int]:
    """The router's unitHash of each line's ``id``, parsed by JavaScript's JSON.parse."""
    unit = (REPO / "dist" / "experiment" / "unit.js").resolve()
    script = (f"import {{ unitHash }} from {json.dumps(unit.as_uri())}; import {{ readFileSync }} from 'node:fs';"
              f"const out = readFileSync({json.dumps(str(lines))}, 'utf8').split('\\n').filter(Boolean)"
              ".map((l) => unitHash(JSON.parse(l).id)); process.stdout.write(JSON.stringify(out))")
    done = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _spark_hashes(spark: Any, lines: Path) -> list[int | None]:
    # As the reduction reads a record's field (`modelsplit report --sql spark`): a VARIANT of the line.
    rows = spark.sql(f"SELECT ms_unit_hash(try_variant_get(try_parse_json(value), '$.id', 'string')) AS h "
                     f"FROM text.`{lines}`").collect()
    return [r["h"] for r in rows]


def test_the_jvm_hash_is_the_routers(cli, jar, tmp_path: Path) -> None:
    ids = _ids(3000, 21)
    lines = _write_ids(tmp_path / "ids.jsonl", ids)
    router = _router_hashes(cli, lines)
    assert router == [unit_hash(i) for i in ids]  # the client agrees with the router
    assert sum(map(_lone_surrogate, ids)) > 500
    got = _jvm_hashes(jar, lines)
    assert len(got) == len(ids)
    wrong = [(i, g, r) for i, g, r in zip(ids, got, router) if g != r]
    assert not wrong, f"{len(wrong)} of {len(ids)} ids hash differently in the JVM, e.g. {wrong[:3]!r}"


def test_spark_registers_it_and_reads_ids_as_the_reduction_does(cli, spark, tmp_path: Path) -> None:
    assert ms.unit_hash_function(spark) == "jvm"
    ids = _ids(2000, 22)
    lines = _write_ids(tmp_path / "ids.jsonl", ids)
    router = _router_hashes(cli, lines)
    got = _spark_hashes(spark, lines)
    whole = [(i, g, r) for i, g, r in zip(ids, got, router) if not _lone_surrogate(i)]
    assert len(got) == len(ids) and len(whole) > 200
    assert [g for _, g, _ in whole] == [r for _, _, r in whole]
    # Spark's strings are UTF-8: its JSON reader has made each lone surrogate a '?' before any function sees it.
    lone = [(i, g) for i, g in zip(ids, got) if _lone_surrogate(i)]
    assert [g for _, g in lone] == [unit_hash(_as_javascript(i).replace("\ufffd", "?")) for i, _ in lone]


def test_a_null_id_is_a_null_hash(spark) -> None:
    row = spark.sql("SELECT ms_unit_hash(CAST(NULL AS STRING)) AS n, ms_unit_hash('user-0') AS h").collect()[0]
    assert row["n"] is None and row["h"] == unit_hash("user-0")


def test_without_the_class_the_python_udf_is_registered_and_said(spark, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ms, "JVM_UNIT_HASH", "modelsplit.spark.NoSuchClass")
    ms.register(spark)
    try:
        assert ms.unit_hash_function(spark) == "python"
        ids = [i for i in _ids(300, 7) if not _lone_surrogate(i)]
        assert _spark_hashes(spark, _write_ids(tmp_path / "ids.jsonl", ids)) == [unit_hash(i) for i in ids]
    finally:
        monkeypatch.undo()
        ms.register(spark)
    assert ms.unit_hash_function(spark) == "jvm"
