"""deploy/clickhouse/schema.sql on the current ClickHouse engine (chdb): every table and view, the
materialized views fed as the Kafka engine table would feed them (a plain table with its columns
stands in for it: chdb has no Kafka engine), the reduction over `modelsplit.ms_lines` equal to the
report over the same records with a redelivered duplicate counted once, the assignment view, and
the README's query set, each checked against plain Python over the records."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")

from chdb import session as chs  # noqa: E402

from modelsplit import clickhouse as mc  # noqa: E402
from modelsplit.duckdb import summary_from_totals  # noqa: E402
from support import REPO  # noqa: E402
from test_at_scale import config as config  # noqa: E402,F401  (the fixture)
from test_at_scale import hostile, write_lines  # noqa: E402
from test_experiment_summary import compare, report_experiments  # noqa: E402

SCHEMA = REPO / "deploy" / "clickhouse" / "schema.sql"
README = REPO / "README.md"

# The Kafka engine table's columns as a Kafka table shows them to a materialized view.
KAFKA_STAND_IN = """CREATE TABLE IF NOT EXISTS modelsplit.records_queue
(
    line String, `_headers.name` Array(String), `_headers.value` Array(String), _partition UInt64, _offset UInt64
)
ENGINE = MergeTree ORDER BY tuple()"""


def statements(text: str) -> list[str]:
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";\n") if s.strip()]


def readme_queries() -> dict[str, str]:
    """The README's ready queries: each ```sql block after a `<!-- query: NAME -->` line."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<!-- query: (\S+) -->\s*```sql\n(.*?)```", README.read_text(), re.S)}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("ch")
    _, records = hostile(tmp)
    # Shadows on some predictions, and model versions, so the queries have something to show.
    for i, r in enumerate(records):
        if r["type"] == "prediction":
            r["primary"]["model_version"] = "7" if i % 3 else "8"
            r["primary"]["latency_ms"] = 1 + (i * 37) % 200
            r["primary"]["status"] = 503 if i % 41 == 0 else 200
            if i % 2 == 0:
                r["shadows"] = [{"model": "c", "status": 200, "latency_ms": 3, "prediction": None, "error": None,
                                 "comparison": {"agree": i % 5 != 0, "abs_diff_max": 0.1, "abs_diff_mean": 0.1, "fraction_agree": 1}},
                                {"model": "d", "dropped": "max_in_flight"}]
    s = chs.Session()
    for stmt in statements(SCHEMA.read_text()):
        if "ENGINE = Kafka" in stmt:
            stmt = KAFKA_STAND_IN
        s.query(stmt)
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    redelivered = [10, 11, 12, 40]
    messages = [(i, line) for i, line in enumerate(lines)] + [(i, lines[i]) for i in redelivered] + [(-1, '{"type":"outc')]
    values = []
    for offset, (i, line) in enumerate(messages):
        r = records[i] if i >= 0 else {}
        names = ["ce_specversion", "ce_id", "ce_source", "ce_type"]
        vals = ["1.0", r.get("ce_id", "x"), "router-1", "org.modelsplit." + str(r.get("type", "outcome"))]
        array = lambda xs: "[" + ", ".join(mc._literal(x) for x in xs) + "]"  # noqa: E731
        values.append(f"({mc._literal(line)}, {array(names)}, {array(vals)}, 0, {offset})")
    # The redelivered copies arrive later, in blocks of their own (within one inserted block,
    # ReplacingMergeTree already keeps one row per key).
    s.query("INSERT INTO modelsplit.records_queue VALUES " + ",".join(values[:len(lines)]))
    s.query("INSERT INTO modelsplit.records_queue VALUES " + ",".join(values[len(lines):]))
    clean = write_lines(tmp / "clean.jsonl", [{k: v for k, v in r.items() if k != "ce_id"} for r in records])
    yield s, records, clean
    s.close()


def query(s: Any, sql: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in str(s.query(sql, "JSONEachRow")).splitlines() if x.strip()]


def test_kafka_messages_reach_every_table_and_duplicates_are_kept_until_final(loaded) -> None:
    s, records, _ = loaded
    n = len(records)
    assert query(s, "SELECT count() AS n FROM modelsplit.records")[0]["n"] == n + 4  # the truncated line is not JSON
    assert query(s, "SELECT count() AS n FROM modelsplit.records FINAL")[0]["n"] == n
    preds = sum(1 for r in records if r["type"] == "prediction")
    assert query(s, "SELECT count() AS n FROM modelsplit.predictions FINAL")[0]["n"] == preds
    assert query(s, "SELECT count() AS n FROM modelsplit.outcomes FINAL")[0]["n"] == n - preds


def test_the_reduction_over_the_tables_is_the_report(cli, loaded, config) -> None:
    s, records, clean = loaded
    sql = mc.reduction_sql(config, modelsplit_bin=cli)
    s.query("USE modelsplit")
    rows = [{k: v for k, v in r.items() if v is not None} for r in query(s, sql)]
    assert compare(summary_from_totals(rows, config, modelsplit_bin=cli), report_experiments(cli, config, clean)) == []


def test_the_assignment_view_is_each_users_first_exposure(loaded) -> None:
    s, records, _ = loaded
    # The first exposure: the earliest ts, ties (a millisecond) broken by the smaller event id.
    want: dict[tuple[str, str], tuple[str, str, str]] = {}
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for r in records:
        if r["type"] == "prediction" and r["assignment"] == "hash" and r.get("user_id"):
            key = (r["user_id"], r["route"])
            if key not in first or (r["ts"], r["ce_id"]) < first[key]:
                first[key] = (r["ts"], r["ce_id"])
                want[key] = (r["ts"], r["primary"]["model"], r["primary"]["model_version"])
    got = query(s, readme_queries()["assignments"])
    assert len(got) == len(want)
    for row in got:
        ts, arm, version = want[(row["unit_id"], row["experiment_id"])]
        assert (row["first_exposure"].replace(" ", "T") + "Z", row["arm"], row["model_version"]) == (ts, arm, version)


def test_the_readme_queries_answer_what_they_say(loaded) -> None:
    s, records, _ = loaded
    queries = readme_queries()
    assert set(queries) >= {"agreement_by_hour", "error_rate_by_model_version", "p99_by_arm", "assignments"}
    preds = [r for r in records if r["type"] == "prediction" and r.get("schema", 1) == 1]

    agree: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in preds:
        for sh in r.get("shadows", []):
            if "dropped" in sh:
                continue
            a = agree[(r["ts"][:13], r["route"], r["primary"]["model"], sh["model"])]
            a[0] += sh["comparison"]["agree"]
            a[1] += 1
    got = query(s, queries["agreement_by_hour"])
    assert len(got) == len(agree) > 0
    for row in got:
        a = agree[(row["hour"][:13].replace(" ", "T"), row["route"], row["primary"], row["shadow"])]
        assert (row["agree"], row["compared"]) == (a[0], a[1]) and row["agreement"] == pytest.approx(a[0] / a[1])

    errors: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in preds:
        p = r["primary"]
        e = errors[(r["route"], p["model"], p["model_version"])]
        e[0] += p["status"] == 0 or p["status"] >= 500 or p["error"] is not None
        e[1] += 1
    got = query(s, queries["error_rate_by_model_version"])
    assert {(g["route"], g["model"], g["model_version"]): [g["errors"], g["requests"]] for g in got} == dict(errors)

    latency: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in preds:
        latency[(r["route"], r["primary"]["model"])].append(r["primary"]["latency_ms"])
    got = query(s, queries["p99_by_arm"])
    assert len(got) == len(latency)
    for g in got:
        values = sorted(latency[(g["route"], g["arm"])])
        # Nearest rank, as `modelsplit report`: the value at rank ceil(0.99 n).
        assert g["p99_ms"] == values[math.ceil(0.99 * len(values)) - 1]
        assert g["requests"] == len(values)


def test_report_clickhouse_url_runs_the_reduction_over_http(cli, loaded, config) -> None:
    """`modelsplit report --clickhouse URL` against ClickHouse's HTTP interface. The server here is a
    stand-in of a few lines that hands each POSTed query to chdb (the real engine, the schema's
    tables) with the `database` parameter, and answers as ClickHouse does: 200 with the rows, or
    500 with the exception's text; what the router sends and reads over HTTP is what is checked."""
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    s, _, clean = loaded
    seen: list[dict[str, Any]] = []

    class ClickHouseHttp(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            params = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            seen.append({"params": params, "user": self.headers.get("x-clickhouse-user"), "key": self.headers.get("x-clickhouse-key")})
            try:
                s.query(f"USE {params['database']}")
                out = str(s.query(body, params.get("default_format", "TabSeparated"))).encode()
                status = 200
            except Exception as err:  # ClickHouse answers an exception as 500 with its text
                out, status = str(err).encode(), 500
            self.send_response(status)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), ClickHouseHttp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://analyst:p%40ss@127.0.0.1:{server.server_address[1]}"
        done = subprocess.run(["node", str(cli), "report", "--config", str(config), "--clickhouse", url, "--json"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["source"] == f"clickhouse http://127.0.0.1:{server.server_address[1]}"
        assert compare(doc["experiments"], report_experiments(cli, config, clean)) == []
        assert seen[-1] == {"params": {"database": "modelsplit", "default_format": "JSONEachRow"}, "user": "analyst", "key": "p@ss"}

        bad = subprocess.run(["node", str(cli), "report", "--config", str(config), "--clickhouse", url + "/?database=nope"],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1
        assert "answered 500: " in bad.stderr and "nope" in bad.stderr
    finally:
        server.shutdown()
        server.server_close()
