"""modelsplit.spark.experiment_summary: the router's reduction (`modelsplit report --sql spark`) run
by Spark (PySpark, local mode) over record files and over the topic the Kafka sink writes, finished
by `modelsplit report --totals`, is `modelsplit report`'s experiments over the same records, field by
field (numbers to a relative 1e-9), with duplicates of at-least-once delivery counted once and the
hostile inputs of test_at_scale.py; end to end, the engines' summaries also equal the fleet's
/admin/experiments read through a real Prometheus (that part skipped, saying why, without `prometheus`).
One SparkSession for the module (Spark starts slowly).
Skipped, saying why, without pyspark (clients/python/requirements-spark.txt) or Java."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -r clients/python/requirements-spark.txt)")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java 17 (apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from modelsplit import spark as ms  # noqa: E402
from support import REPO  # noqa: E402
from test_at_scale import fleet  # noqa: E402,F401  (the module-scoped fixture, shared)
from test_experiment_summary import EDGE_CONFIG, compare, edge_records, report_experiments  # noqa: E402


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] session, with the Kafka source's jars from scripts/spark/fetch.sh when they can
    be fetched (the end-to-end test skips, saying why, when not)."""
    import subprocess

    if shutil.which("mvn") is not None:
        # PYTHON: the interpreter whose pyspark jars the unit hash's JVM function is compiled against.
        subprocess.run(["bash", str(REPO / "scripts" / "spark" / "fetch.sh")], capture_output=True, timeout=900,
                       env={**os.environ, "PYTHON": sys.executable})
    jars = REPO / ".cache" / "spark" / "lib"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    s = ms.session(master="local[2]", jars=str(jars) if jars.is_dir() else None,
                   conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g"})
    s.sparkContext.setLogLevel("ERROR")
    print(f"Spark's unit hash: {ms.unit_hash_function(s)}")
    yield s
    s.stop()


def test_files_are_the_report_duplicates_counted_once(cli, spark, fleet) -> None:  # noqa: F811
    config, theirs = fleet["config"], fleet["theirs"]
    mine = ms.experiment_summary([fleet["clean1"], fleet["dirty2"]], config, spark=spark, modelsplit_bin=cli)
    assert compare(mine, theirs) == []
    assert [r["route"] for r in mine] == ["r", "per_request", "quiet"]
    assert mine[2]["metrics"]["clicked"]["verdict"] == "collecting data"
    # Without their ids the redelivered events are three more events: the dedup is what made them equal.
    other = ms.experiment_summary([fleet["clean1"], fleet["no_ids2"]], config, spark=spark, modelsplit_bin=cli)
    assert compare(other, theirs) != []


def test_edge_cases_are_the_report(cli, spark, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(EDGE_CONFIG, encoding="utf-8")
    records = tmp_path / "edge.jsonl"
    edge_records(records)
    mine = ms.experiment_summary(records, config, spark=spark, modelsplit_bin=cli)
    assert compare(mine, report_experiments(cli, config, records)) == []


def test_one_of_files_or_a_topic(cli, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one of the two"):
        ms.experiment_summary(None, tmp_path / "x.yaml", modelsplit_bin=cli)
    with pytest.raises(ValueError, match="needs topic"):
        ms.experiment_summary(None, tmp_path / "x.yaml", kafka="127.0.0.1:1", modelsplit_bin=cli)


# ---- two routers -> a real Kafka broker -> Spark (and DuckDB, chdb over the topic's records) -------

TOOL = Path(__file__).with_name("kafka_tool.mjs")

E2E_CONFIG = """\
listen: {{ host: 127.0.0.1, port: 0 }}
admin: {{ host: 127.0.0.1, port: 0 }}
models:
  a: {{ url: "{a}" }}
  b: {{ url: "{b}" }}
routes:
  - name: r
    path: /r
    record: true
    split:
      - {{ model: a, weight: 1 }}
      - {{ model: b, weight: 1 }}
    metrics:
      - {{ name: clicked, type: binary }}
      - {{ name: revenue, type: continuous }}
  - name: quiet
    path: /quiet
    record: true
    split:
      - {{ model: a, weight: 1 }}
      - {{ model: b, weight: 1 }}
    metrics:
      - {{ name: clicked, type: binary }}
recording:
  sink: kafka
  path: {directory}/unused.jsonl
  kafka: {{ brokers: ["{broker}"], topic: {topic}, linger_ms: 5 }}
  spool: {{ path: {directory}/spool, max_bytes: 67108864 }}
{evaluation}"""

# With it, /admin/experiments reads the fleet's totals (every router's) from Prometheus.
E2E_EVALUATION = """\
evaluation:
  interval: 1h
  prometheus: {{ url: "{url}", scrape_interval: 1s, lookback: 1h }}
"""

# What only a process that saw every look knows (running minima, the verdicts read from them), the
# user sample's fraction (each replica has its own) and where the numbers come from.
_LOOKS = {"p_value_sequential", "p_value_sequential_adjusted", "verdict", "scope", "non_inferior", "sampled_fraction"}


def without_looks(value: Any) -> Any:
    """An experiment without the fields the fleet's /admin/experiments cannot share with the report."""
    if isinstance(value, list):
        return [without_looks(v) for v in value]
    if isinstance(value, dict):
        return {k: without_looks(v) for k, v in value.items() if k not in _LOOKS}
    return value


def _tool(*args: str, stdin: str | None = None) -> str:
    import subprocess

    done = subprocess.run(["node", str(TOOL), *args], input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (scripts/kafka/broker.sh, jars from Maven Central), stopped at the end."""
    import socket
    import subprocess

    if shutil.which("mvn") is None:
        pytest.skip("the Kafka broker's jars need mvn (apt-get install maven)")
    for script in ("scripts/kafka/fetch.sh", "scripts/spark/fetch.sh"):
        done = subprocess.run(["bash", str(REPO / script)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"{script} could not fetch its jars: {done.stderr.strip()[-300:]}")
    directory = tmp_path_factory.mktemp("kafka")
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                continue
    script = str(REPO / "scripts" / "kafka" / "broker.sh")
    subprocess.run(["bash", script, "start", str(directory), str(port)], check=True, capture_output=True, timeout=300)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", script, "kill", str(directory)], capture_output=True, timeout=120)


def _drive(router: Any, users: range, seed: int) -> int:
    """A request per user on route r, then the user's `clicked` (and, one in two, `revenue`) outcome."""
    import json
    import random

    from modelsplit import Feedback
    from support import Client

    rng = random.Random(seed)
    client = Client(router.url)
    served = []
    try:
        for u in users:
            status, headers, _ = client.request("POST", "/r/invocations", json.dumps({"dataframe_records": [{"tenure_months": u % 60}]}).encode(),
                                                {"content-type": "application/json", "x-user-id": f"u{u}"})
            assert status == 200, status
            served.append((u, headers["x-request-id"], headers["x-modelsplit-model"]))
    finally:
        client.close()
    sent = 0
    with Feedback(router.url, batch_size=100) as fb:
        for u, request_id, model in served:
            fb.send("clicked", int(rng.random() < (0.3 if model == "a" else 0.4)), route="r", request_id=request_id)
            sent += 1
            if u % 2 == 0:
                fb.send("revenue", 10 + rng.gauss(0, 2) + (1 if model == "b" else 0), route="r", user_id=f"u{u}")
                sent += 1
    return sent


def test_two_routers_through_kafka_are_the_report_over_their_records(cli, spark, broker, models, tmp_path: Path) -> None:
    """Two routers write one topic, scraped by a real Prometheus; Spark over the topic, DuckDB (and
    chdb) over its records exported with their event ids, each equal to `modelsplit report` over the
    union of the two routers' records and to `/admin/experiments` read through Prometheus (the
    fleet's totals), field by field; then a forced redelivery, a record with unknown fields, records
    of an older schema generation (no `schema` field) and of a newer one, and a route with no data."""
    import contextlib
    import json

    from modelsplit import duckdb as md
    from support import free_port, start_prometheus, start_router, wait_for

    try:
        import chdb  # noqa: F401
        from modelsplit import clickhouse as mc
    except ImportError:
        mc = None
    has_prometheus = shutil.which("prometheus") is not None
    topic = "ms-e2e"
    _tool("create", broker, topic)
    urls = list(models.values())
    prom_port = free_port()
    evaluation = E2E_EVALUATION.format(url=f"http://127.0.0.1:{prom_port}") if has_prometheus else ""
    # Each user reaches one router (session affinity): the fleet's user count is then exact (README).
    plan = (range(0, 150), range(150, 300))
    with contextlib.ExitStack() as stack:
        routers = []
        for i in range(2):
            directory = tmp_path / f"router-{i}"
            directory.mkdir()
            text = E2E_CONFIG.format(a=urls[0], b=urls[1], broker=broker, topic=topic, directory=directory,
                                     evaluation=evaluation)
            routers.append(stack.enter_context(start_router(cli, text, directory)))
        sent = sum(_drive(router, users, seed=i) for i, (router, users) in enumerate(zip(routers, plan)))
        fleet = None
        if has_prometheus:
            prom = stack.enter_context(start_prometheus([r.admin_url.split("//")[1] for r in routers], prom_port,
                                                        tmp_path))
            # Each router's outcomes came after its requests: a scrape that holds them all holds both.
            wait_for(lambda: prom.scalar("sum(modelsplit_outcome_bucket_count)"), sent, "outcomes Prometheus scraped")
            wait_for(lambda: prom.scalar('sum(modelsplit_experiment_users{route="r"})'), len(plan[0]) + len(plan[1]),
                     "users Prometheus scraped")
            status, body = routers[0].get_json("/admin/experiments")
            assert status == 200, body
            fleet = {r["route"]: r for r in body["routes"]}  # the admin lists routes by name, the report in config order
            assert sorted(fleet) == ["quiet", "r"]
            assert "every replica" in fleet["r"]["scope"], fleet["r"]["scope"]
        for router in routers:
            assert router.stop() == 0, "".join(router.output)
    config = tmp_path / "router-0" / "router.yaml"

    def export(messages: list[dict[str, Any]], name: str) -> tuple[Path, Path]:
        """The routers' records each once, in the topic's order; and the topic as an export keeps it:
        every copy, with its event id."""
        seen: set[str] = set()
        union, with_ids = tmp_path / f"{name}-union.jsonl", tmp_path / f"{name}-with-ids.jsonl"
        with open(union, "w", encoding="utf-8") as u, open(with_ids, "w", encoding="utf-8") as w:
            for m in messages:
                w.write(json.dumps({**json.loads(m["value"]), "ce_id": m["headers"]["ce_id"]}) + "\n")
                if m["headers"]["ce_id"] not in seen:
                    seen.add(m["headers"]["ce_id"])
                    u.write(m["value"] + "\n")
        return union, with_ids

    written = [json.loads(line) for line in _tool("dump", broker, topic).splitlines()]
    assert len(written) >= 2 * 300 and {m["headers"]["ce_source"] for m in written} and all("ce_id" in m["headers"] for m in written)
    union, with_ids = export(written, "routers")
    theirs = report_experiments(cli, config, union)
    summaries = {"spark over the topic": ms.experiment_summary(None, config, kafka=broker, topic=topic, spark=spark,
                                                               modelsplit_bin=cli),
                 "duckdb over the export": md.experiment_summary(with_ids, config, modelsplit_bin=cli)}
    if mc is not None:
        summaries["chdb over the export"] = mc.experiment_summary(with_ids, config, modelsplit_bin=cli)
    for name, mine in summaries.items():
        assert compare(mine, theirs, name) == []
        if fleet is not None:
            # The fleet's /admin/experiments, read through Prometheus, field by field (both carry the same keys).
            assert [r["route"] for r in mine] == ["r", "quiet"]
            worst: list[float] = []
            assert compare(without_looks(mine), without_looks([fleet[r["route"]] for r in mine]),
                           f"{name} vs /admin/experiments", worst) == []
            assert len(worst) > 50, worst  # counts, means, intervals, p-values of both metrics and the srm
            print(f"{name} vs /admin/experiments: {len(worst)} numbers, largest relative gap {max(worst):.3g}")

    outcomes = [m for m in written if json.loads(m["value"])["type"] == "outcome"]
    hostile = []
    # A forced redelivery: three outcomes and a prediction again, same event ids, later in the topic.
    hostile += [dict(m) for m in outcomes[5:8]] + [dict(written[3])]
    # A record with fields nobody declared, at the top and inside.
    extra = json.loads(outcomes[20]["value"])
    extra.update(x_future={"nested": [1, "two", None]}, request_id=None, user_id="u5")
    hostile.append({"key": None, "value": json.dumps(extra), "headers": {**outcomes[20]["headers"], "ce_id": "extra-1"}})
    # The older generation (no `schema` field) and a newer one nobody reads.
    for k, m in enumerate(outcomes[30:40]):
        old = json.loads(m["value"])
        del old["schema"]
        old["user_id"], old["request_id"] = f"u{1000 + k}", None
        hostile.append({"key": None, "value": json.dumps(old), "headers": {**m["headers"], "ce_id": f"old-{k}"}})
    newer = json.loads(outcomes[41]["value"])
    newer["schema"] = 99
    hostile.append({"key": None, "value": json.dumps(newer), "headers": {**outcomes[41]["headers"], "ce_id": "newer-1"}})
    _tool("produce", broker, topic, stdin="".join(json.dumps({k: m[k] for k in ("key", "value", "headers")}) + "\n" for m in hostile))

    everything = [json.loads(line) for line in _tool("dump", broker, topic).splitlines()]
    assert len(everything) == len(written) + len(hostile)
    union, with_ids = export(everything, "hostile")
    theirs = report_experiments(cli, config, union)
    # The export holds the redelivered copies: read as plain files (every line its own event), they change the numbers.
    assert compare(report_experiments(cli, config, with_ids), theirs) != []

    mine = ms.experiment_summary(None, config, kafka=broker, topic=topic, spark=spark, modelsplit_bin=cli)
    assert compare(mine, theirs) == []
    assert [r["route"] for r in mine] == ["r", "quiet"]
    assert mine[1]["metrics"]["clicked"]["verdict"] == "collecting data"

    assert compare(md.experiment_summary(with_ids, config, modelsplit_bin=cli), theirs) == []
    assert compare(ms.experiment_summary(with_ids, config, spark=spark, modelsplit_bin=cli), theirs) == []
    if mc is not None:
        assert compare(mc.experiment_summary(with_ids, config, modelsplit_bin=cli), theirs) == []
    if fleet is None:
        pytest.skip("prometheus is not installed (bash scripts/install-prometheus.sh): the summaries were checked "
                    "against the report, not against /admin/experiments read through Prometheus")
