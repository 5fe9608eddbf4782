#!/usr/bin/env python3
"""The experiment's reduction at scale: `modelsplit report --config` over record files against the
same files reduced by DuckDB (and by the ClickHouse engine, chdb, with --chdb; by Spark local[2],
with --spark), side by side: wall time, CPU time and peak memory, at each record count given. Every
engine's summary is compared with the report's (field by field, relative 1e-9) before its numbers
are printed.

  python bench/at-scale.py --records 200000,1000000 [--chdb] [--spark] [--engines report,spark]
      [--out bench/results/at-scale.md]

DuckDB runs with `memory_limit` $BENCH_DUCKDB_MEMORY (default 3GB) and spills past it to a directory
beside the records (modelsplit.duckdb.connect).
Spark runs the unit hash in the JVM (modelsplit.spark.UnitHash) when `bash scripts/spark/fetch.sh`
has built its jar into .cache/spark/lib (or $MODELSPLIT_SPARK_JARS), else as a Python UDF; the
engine column says which ("spark (jvm hash)", "spark (python hash)").
Spark's numbers include its start (a JVM, local[2], driver heap 2 GiB, or $BENCH_SPARK_MEMORY) and its JVM, read from
/proc before it exits: CPU is the Python process's, its finished children's and the JVM's; peak
memory is the larger of the Python side's and the JVM's resident high-water mark (they run at once:
their sum bounds it from above, printed beside it).

Needs `npm run build` and a Python with the client and its extras
(pip install -r clients/python/requirements-test.txt -e clients/python).
Each measurement runs in a process of its own, so its peak memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "dist" / "cli" / "main.js"
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))

CONFIG = """\
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  a: { url: "http://127.0.0.1:9001" }
  b: { url: "http://127.0.0.1:9002" }
routes:
  - name: r
    path: /r
    split:
      - { model: a, weight: 1 }
      - { model: b, weight: 1 }
    metrics:
      - { name: clicked, type: binary }
      - { name: revenue, type: continuous }
"""


def generate(path: Path, records: int, seed: int = 1) -> None:
    """`records` lines: per request a prediction, a `clicked` and (one in two) a `revenue` outcome,
    from 50 000 users (or fewer), in time order, as a router writes them."""
    rng = random.Random(seed)
    users = max(1, min(50_000, records // 20))
    n = 0
    i = 0
    with open(path, "w", encoding="utf-8") as f:
        while n < records:
            i += 1
            u = rng.randrange(users)
            arm = "a" if (u * 2654435761) % 7 < 3.5 else "b"
            ts = f"2026-11-{1 + (i // 864000) % 28:02d}T{(i // 36000) % 24:02d}:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 10}00Z"
            f.write('{"type":"prediction","schema":1,"ts":"%s","request_id":"q%d","route":"r","user_id":"u%d","assignment":"hash",'
                    '"shares":{"a":0.5,"b":0.5},"primary":{"model":"%s","status":200,"latency_ms":%d,"prediction":null,"error":null},'
                    '"shadows":[]}\n' % (ts, i, u, arm, 5 + i % 50))
            f.write('{"type":"outcome","schema":1,"ts":"%s","route":"r","request_id":"q%d","user_id":"u%d","model":"%s",'
                    '"metric":"clicked","value":%d,"attributed_by":"request_id"}\n' % (ts, i, u, arm, rng.random() < 0.2))
            n += 2
            if i % 2 == 0 and n < records:
                f.write('{"type":"outcome","schema":1,"ts":"%s","route":"r","request_id":"q%d","user_id":"u%d","model":"%s",'
                        '"metric":"revenue","value":%.3f,"attributed_by":"request_id"}\n' % (ts, i, u, arm, rng.expovariate(0.1)))
                n += 1


def one(engine: str, records: str, config: str) -> None:
    """In a process of its own: runs one engine and prints its summary, time and peak memory."""
    started = time.perf_counter()
    jvm = None
    if engine == "spark":
        from modelsplit import spark as ms

        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        lib = os.environ.get("MODELSPLIT_SPARK_JARS") or str(REPO / ".cache" / "spark" / "lib")
        session = ms.session(master="local[2]", jars=lib if os.path.exists(lib) else None,
                             conf={"spark.driver.memory": os.environ.get("BENCH_SPARK_MEMORY", "2g"),
                                   "spark.sql.shuffle.partitions": "4"})
        session.sparkContext.setLogLevel("ERROR")
        summary = ms.experiment_summary(records, config, spark=session, modelsplit_bin=str(CLI))
        jvm = _proc_usage(session.sparkContext._gateway.proc.pid)
        jvm["unit_hash"] = ms.unit_hash_function(session)
    elif engine == "report":
        done = subprocess.run(["node", str(CLI), "report", "--config", config, records, "--json"], capture_output=True, text=True, check=True)
        summary = json.loads(done.stdout)["experiments"]
    elif engine == "duckdb":
        from modelsplit import duckdb as md

        # A memory limit past which DuckDB spills to disk (beside the records): without one it takes
        # 80 % of the machine's memory and, at 1.6 GiB per million records, needed about 15 GiB at 10 million.
        summary = md.experiment_summary(records, config, modelsplit_bin=str(CLI),
                                        memory_limit=os.environ.get("BENCH_DUCKDB_MEMORY", "3GB"),
                                        temp_directory=str(Path(records).parent / "duckdb-spill"))
    else:
        import importlib

        mod = importlib.import_module(f"modelsplit.{engine}")
        summary = mod.experiment_summary(records, config, modelsplit_bin=str(CLI))
    wall = time.perf_counter() - started
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    peak = max(me.ru_maxrss, kids.ru_maxrss) / 1024
    out = {"wall_s": wall, "cpu_s": cpu, "peak_mib": peak, "summary": summary}
    if jvm is not None:
        out.update(cpu_s=cpu + jvm["cpu_s"], peak_mib=max(peak, jvm["peak_mib"]), sum_mib=peak + jvm["peak_mib"],
                   unit_hash=jvm["unit_hash"])
    print(json.dumps(out))


def _proc_usage(pid: int) -> dict:
    """A live process's CPU seconds (user + system) and resident high-water mark, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / ticks, "peak_mib": hwm / 1024}


def measure(engine: str, records: Path, config: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", engine, str(records), str(config)], capture_output=True, text=True)
    if done.returncode != 0:
        causes = [line for line in done.stderr.splitlines() if "Error" in line and not line.lstrip().startswith("at ")]
        raise SystemExit(f"{engine}: {' | '.join(causes[:5])}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", default="200000,1000000")
    ap.add_argument("--chdb", action="store_true", help="also the ClickHouse engine (chdb)")
    ap.add_argument("--spark", action="store_true", help="also Spark, local[2] (pyspark: clients/python/requirements-spark.txt)")
    ap.add_argument("--engines", default=None, help="only these engines (comma-separated; the first is the reference)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=3, metavar=("ENGINE", "RECORDS", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(*args.one)
        return
    from test_experiment_summary import compare

    engines = ["report", "duckdb"] + (["clickhouse"] if args.chdb else []) + (["spark"] if args.spark else [])
    if args.engines:
        engines = args.engines.split(",")
    lines = ["| records | engine | wall s | CPU s | peak MiB | records/s | equal to report |", "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    with tempfile.TemporaryDirectory(prefix="ms-at-scale-") as tmp:
        config = Path(tmp) / "router.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        for count in [int(x) for x in args.records.split(",")]:
            records = Path(tmp) / f"records-{count}.jsonl"
            generate(records, count)
            size = os.path.getsize(records) / 2**20
            reference = None
            for engine in engines:
                m = measure(engine, records, config)
                if reference is None:
                    reference = m["summary"]
                diff = compare(m["summary"], reference)
                peak = f"{m['peak_mib']:.0f}" + (f" (sum {m['sum_mib']:.0f})" if "sum_mib" in m else "")
                label = f"{engine} ({m['unit_hash']} hash)" if "unit_hash" in m else engine
                if engine == "duckdb":
                    label += f" (memory_limit {os.environ.get('BENCH_DUCKDB_MEMORY', '3GB')})"
                lines.append(f"| {count:,} ({size:.0f} MiB) | {label} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {peak} | "
                             f"{count / m['wall_s']:,.0f} | {'yes' if not diff else 'NO: ' + '; '.join(diff[:2])} |")
                print(lines[-1], flush=True)
                if args.out:
                    _write(args, lines)
            records.unlink()
    print("\n".join(lines))
    if args.out:
        _write(args, lines)


def _write(args: argparse.Namespace, lines: list[str]) -> None:
    """The table so far (written after every row: a long run interrupted keeps what it measured)."""
    flags = (" --chdb" if args.chdb else "") + (" --spark" if args.spark else "") + (f" --engines {args.engines}" if args.engines else "")
    Path(args.out).write_text(f"# The experiment at scale (bench/at-scale.py --records {args.records}{flags})\n\n"
                              f"One run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs shared with "
                              "other work (a loaded machine: compare the rows of one run, not runs).\n\n" + "\n".join(lines) + "\n",
                              encoding="utf-8")


if __name__ == "__main__":
    main()
