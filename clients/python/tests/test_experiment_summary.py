"""modelsplit.experiment_summary gives the numbers and verdicts `modelsplit report --config CFG
FILES --json` prints (and the live router's /admin/experiments), to 1e-9."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from modelsplit import experiment_summary, read_records, summary_frame
from support import run_cli

REL = 1e-9


def compare(mine: Any, theirs: Any, where: str = "", worst: list[float] | None = None) -> list[str]:
    """Differences between two JSON-like values: keys, strings, booleans and nulls exactly;
    numbers to a relative 1e-9 (absolute 1e-15 around 0). `worst` collects the largest relative gap."""
    out: list[str] = []
    if isinstance(theirs, dict):
        if not isinstance(mine, dict):
            return [f"{where}: {mine!r} is not an object"]
        if list(mine) != list(theirs):
            out.append(f"{where}: keys {list(mine)} != {list(theirs)}")
        for k in theirs:
            if k in mine:
                out += compare(mine[k], theirs[k], f"{where}.{k}", worst)
    elif isinstance(theirs, list):
        if not isinstance(mine, list) or len(mine) != len(theirs):
            return [f"{where}: {mine!r} != {theirs!r}"]
        for i, (a, b) in enumerate(zip(mine, theirs)):
            out += compare(a, b, f"{where}[{i}]", worst)
    elif isinstance(theirs, bool) or theirs is None or isinstance(theirs, str):
        if mine != theirs or type(mine) is not type(theirs):
            out.append(f"{where}: {mine!r} != {theirs!r}")
    elif isinstance(theirs, (int, float)):
        if isinstance(mine, bool) or not isinstance(mine, (int, float)):
            out.append(f"{where}: {mine!r} != {theirs!r}")
        elif not math.isclose(mine, theirs, rel_tol=REL, abs_tol=1e-15):
            out.append(f"{where}: {mine!r} != {theirs!r}")
        elif worst is not None and theirs != 0:
            worst.append(abs(mine - theirs) / abs(theirs))
    else:
        out.append(f"{where}: unexpected {theirs!r}")
    return out


def report_experiments(cli: Path, config: Path, *files: Path) -> list[dict[str, Any]]:
    cmd = run_cli(cli, "report", "--config", str(config), *map(str, files), "--json")
    assert cmd.returncode == 0, cmd.stderr
    return json.loads(cmd.stdout)["experiments"]


def test_agrees_with_report_on_records_a_real_router_wrote(cli, traffic) -> None:
    theirs = report_experiments(cli, traffic["config"], traffic["base"])
    worst: list[float] = []
    streamed = experiment_summary(traffic["base"], traffic["config"])
    assert compare(streamed, theirs, "streamed", worst) == []
    from_frames = experiment_summary(read_records(traffic["base"]), str(traffic["config"]))
    assert compare(from_frames, theirs, "frames", worst) == []
    # The live router's own numbers, taken before it stopped, are the same too.
    live = [{k: v for k, v in r.items() if k != "scope"} for r in traffic["live_experiments"]]
    assert compare(streamed, live, "live", worst) == []
    print(f"largest relative difference from the router: {max(worst):.3g} over {len(worst)} numbers")

    churn = streamed[0]["metrics"]
    assert streamed[0]["route"] == "churn" and streamed[1]["route"] == "fraud"
    assert churn["converted"]["comparisons"]["churn-v2"]["verdict"] == "candidate better"
    assert churn["converted"]["srm"]["mismatch"] is False
    assert churn["revenue"]["models"]["churn-v1"]["mean"] == pytest.approx(1e6, abs=1)
    assert churn["churned"]["type"] == "binary" and churn["revenue"]["type"] == "continuous"
    frame = summary_frame(streamed)
    row = frame[(frame["metric"] == "converted") & (frame["model"] == "churn-v2")].iloc[0]
    assert row["verdict"] == "candidate better" and row["estimate"] == churn["converted"]["models"]["churn-v2"]["rate"]
    assert len(frame) == 3 * 2 + 2


def test_a_filtered_window_is_analysed_as_given(traffic) -> None:
    recs = read_records(traffic["base"])
    first_half = recs.predictions.iloc[: len(recs.predictions) // 2]
    recs.predictions = first_half
    recs.outcomes = recs.outcomes[recs.outcomes["request_id"].isin(set(first_half["request_id"]))]
    s = experiment_summary(recs, traffic["config"])
    converted = s[0]["metrics"]["converted"]["models"]
    assert sum(m["assignments"] for m in converted.values()) == int((first_half[first_half["route"] == "churn"]["assignment"] == "hash").sum())
    assert sum(m["outcomes"] for m in converted.values()) == int((recs.outcomes["metric"] == "converted").sum())


EDGE_CONFIG = """\
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
models:
  "10": { url: "http://127.0.0.1:9001" }
  "2": { url: "http://127.0.0.1:9002" }
  b: { url: "http://127.0.0.1:9003" }
  x: { url: "http://127.0.0.1:9004" }
  y: { url: "http://127.0.0.1:9005" }
  z: { url: "http://127.0.0.1:9006" }
routes:
  - name: num
    path: /num
    split:
      - { model: "10", weight: 1 }
      - { model: "2", weight: 1 }
      - { model: b, weight: 2 }
    control: b
    metrics:
      - { name: conv, type: binary }
      - { name: amount, type: continuous, higher_is_better: false }
  - name: zero
    path: /zero
    split:
      - { model: x, weight: 3 }
      - { model: y, weight: 0 }
      - { model: z, weight: 7 }
    metrics:
      - { name: flat, type: continuous }
      - { name: big, type: continuous, mde: 0.1 }
      - { name: sure, type: binary, mde: 0.3 }
  - name: empty
    path: /empty
    split:
      - { model: x, weight: 1 }
      - { model: z, weight: 1 }
    metrics:
      - { name: conv, type: binary }
  - name: plain
    path: /plain
    split:
      - { model: x, weight: 1 }
"""


def edge_records(path: Path) -> None:
    rng = random.Random(9)
    lines: list[dict[str, Any]] = []

    def pred(route: str, model: str, assignment: str = "hash") -> None:
        lines.append({"type": "prediction", "schema": 1, "ts": "2026-11-24T20:00:00.000Z", "request_id": f"r{len(lines)}",
                      "route": route, "user_id": "u", "assignment": assignment,
                      "primary": {"model": model, "status": 200, "latency_ms": 1, "prediction": [0.5], "error": None}, "shadows": []})

    def out(route: str, model: str, metric: str, value: float, **extra: Any) -> None:
        lines.append({"type": "outcome", "schema": 1, "ts": "2026-11-24T20:00:01.000Z", "route": route, "request_id": None,
                      "user_id": None, "model": model, "metric": metric, "value": value, "attributed_by": "model", **extra})

    # num: a sample ratio mismatch (the weights say 1:1:2), "2" with no conversion at all, "10" with one amount.
    for _ in range(400):
        pred("num", "b")
    for _ in range(150):
        pred("num", "2")
        pred("num", "10")
    pred("num", "b", "override")
    pred("num", "2", "missing_user_id")
    for _ in range(150):
        out("num", "2", "conv", 0)
        out("num", "10", "conv", int(rng.random() < 0.1))
        out("num", "b", "conv", int(rng.random() < 0.12))
        out("num", "b", "amount", rng.expovariate(0.1))
    out("num", "10", "amount", 3.5)
    # zero: equal values (variance 0) against varied ones; values near 1e6; a weight-0 arm with outcomes.
    for i in range(300):
        pred("zero", "x" if i % 10 < 3 else "z")
        out("zero", "x", "flat", 7.0)
        out("zero", "z", "flat", 7.0 + (i % 3))
        out("zero", "x", "big", 1e6 + rng.gauss(0, 0.25))
        out("zero", "z", "big", 1e6 + 0.2 + rng.gauss(0, 0.25))
        out("zero", "x", "sure", 1)
        out("zero", "z", "sure", 1)
    out("zero", "y", "flat", 1.0)
    # Not counted: a newer schema, a value out of bounds, an unknown attribution, another route.
    out("zero", "x", "flat", 100.0, schema=2)
    out("zero", "x", "flat", 2e15)
    out("zero", "x", "flat", 1.0, attributed_by="guess")
    out("elsewhere", "x", "flat", 1.0)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type":"outcome","route":"zero","model":"x","metric":"fl', encoding="utf-8")


def test_edge_cases_agree_with_report(cli, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(EDGE_CONFIG, encoding="utf-8")
    records = tmp_path / "edge.jsonl"
    edge_records(records)
    theirs = report_experiments(cli, config, records)
    mine = experiment_summary(records, config)
    assert compare(mine, theirs) == []
    assert compare(experiment_summary(read_records(records), config), theirs) == []

    num = mine[0]["metrics"]
    assert list(num["conv"]["models"]) == ["2", "10", "b"]  # JavaScript's key order, as the report prints it
    assert num["conv"]["verdict"] == "sample ratio mismatch: investigate"
    assert num["conv"]["models"]["2"]["rate"] == 0.0
    assert num["amount"]["models"]["10"]["ci"] == [None, None]
    zero = mine[1]["metrics"]
    assert zero["flat"]["models"]["y"]["outcomes"] == 1 and zero["flat"]["models"]["y"]["weight"] == 0
    assert zero["big"]["comparisons"]["z"]["abs_lift"] == pytest.approx(0.2, abs=0.05)
    empty = mine[2]["metrics"]["conv"]
    assert empty["verdict"] == "collecting data" and empty["models"]["x"]["rate"] is None
    assert [r["route"] for r in mine] == ["num", "zero", "empty"]  # routes without metrics are left out


def test_config_from_admin_config_answer(traffic) -> None:
    import yaml

    doc = yaml.safe_load(Path(traffic["config"]).read_text())
    wrapped = {"file": str(traffic["config"]), "sha256": "x", "config": doc}
    assert experiment_summary(traffic["base"], wrapped) == experiment_summary(traffic["base"], traffic["config"])
