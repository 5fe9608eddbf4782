"""modelsplit.experiment_summary is the router's own report: what `modelsplit report --config CFG
FILES --json` prints under `experiments` (and the live router's /admin/experiments), from files
or from DataFrames written back as records; its numbers are statsmodels' (see oracle.py)."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import pytest

from experiment_data import ARMS, OUTCOMES, make_experiment, write_experiment
from modelsplit import (
    ReportError,
    RouterNotFoundError,
    experiment_summary,
    read_records,
    router_command,
    routes_with_metrics,
    summary_frame,
)
from oracle import Oracle
from support import REPO, run_cli

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


def test_is_the_report_on_records_a_real_router_wrote(cli, traffic) -> None:
    theirs = report_experiments(cli, traffic["config"], traffic["base"])
    streamed = experiment_summary(traffic["base"], traffic["config"], modelsplit_bin=cli)
    assert streamed == theirs
    # The live router's own numbers, taken before it stopped, are the same.
    worst: list[float] = []
    live = [{k: v for k, v in r.items() if k != "scope"} for r in traffic["live_experiments"]]
    assert compare(streamed, live, "live", worst) == []
    print(f"largest relative difference from the live router: {max(worst):.3g} over {len(worst)} numbers")

    churn = streamed[0]["metrics"]
    assert streamed[0]["route"] == "churn" and streamed[1]["route"] == "fraud"
    assert streamed[0]["unit"] == "user" and streamed[0]["family"] == 3
    assert churn["converted"]["comparisons"]["churn-v2"]["verdict"] == "candidate better"
    assert churn["converted"]["srm"]["mismatch"] is False
    assert churn["revenue"]["models"]["churn-v1"]["mean"] == pytest.approx(1e6, abs=1)
    assert churn["churned"]["type"] == "binary" and churn["revenue"]["type"] == "continuous"
    frame = summary_frame(streamed)
    row = frame[(frame["metric"] == "converted") & (frame["model"] == "churn-v2")].iloc[0]
    assert row["verdict"] == "candidate better" and row["estimate"] == churn["converted"]["models"]["churn-v2"]["rate"]
    assert row["p_value_adjusted"] == churn["converted"]["comparisons"]["churn-v2"]["p_value_adjusted"]
    assert row["se"] == churn["converted"]["models"]["churn-v2"]["se"]
    assert len(frame) == 3 * 2 + 2


def test_dataframes_are_written_back_as_the_records_they_were(cli, traffic) -> None:
    theirs = report_experiments(cli, traffic["config"], traffic["base"])
    recs = read_records(traffic["base"])
    assert recs.predictions["shares"].notna().all() and recs.outcomes["bucket"].notna().all()
    assert compare(experiment_summary(recs, str(traffic["config"]), modelsplit_bin=cli), theirs, "frames") == []


def test_a_filtered_window_is_analysed_as_given(cli, traffic) -> None:
    recs = read_records(traffic["base"])
    first_half = recs.predictions.iloc[: len(recs.predictions) // 2]
    recs.predictions = first_half
    recs.outcomes = recs.outcomes[recs.outcomes["request_id"].isin(set(first_half["request_id"]))]
    s = experiment_summary(recs, traffic["config"], modelsplit_bin=cli)
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


def test_edge_cases_are_the_report(cli, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(EDGE_CONFIG, encoding="utf-8")
    records = tmp_path / "edge.jsonl"
    edge_records(records)
    theirs = report_experiments(cli, config, records)
    mine = experiment_summary(records, config, modelsplit_bin=cli)
    assert mine == theirs
    assert compare(experiment_summary(read_records(records), config, modelsplit_bin=cli), theirs) == []

    num = mine[0]["metrics"]
    assert list(num["conv"]["models"]) == ["2", "10", "b"]  # JavaScript's key order, as the report prints it
    assert num["conv"]["srm"]["unit"] == "user"  # one user ("u"), first seen on b: no mismatch on users
    assert num["conv"]["models"]["2"]["rate"] == 0.0
    zero = mine[1]["metrics"]
    assert zero["flat"]["models"]["y"]["outcomes"] == 1
    assert zero["big"]["comparisons"]["z"]["abs_lift"] == pytest.approx(0.2, abs=0.05)
    empty = mine[2]["metrics"]["conv"]
    assert empty["verdict"] == "collecting data" and empty["models"]["x"]["rate"] is None
    assert [r["route"] for r in mine] == ["num", "zero", "empty"]  # routes without metrics are left out


def test_config_from_admin_config_answer(cli, traffic, tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load(Path(traffic["config"]).read_text())
    wrapped = {"file": str(traffic["config"]), "sha256": "x", "config": doc}
    expected = experiment_summary(traffic["base"], traffic["config"], modelsplit_bin=cli)
    assert experiment_summary(traffic["base"], wrapped, modelsplit_bin=cli) == expected
    saved = tmp_path / "admin-config.json"
    saved.write_text(json.dumps(wrapped), encoding="utf-8")
    assert experiment_summary(traffic["base"], saved, modelsplit_bin=cli) == expected


def test_numbers_are_statsmodels(cli, tmp_path: Path) -> None:
    """The summary's per-arm means and standard errors, and the lifts' standard errors, are
    statsmodels' cluster-robust OLS (clusters = buckets) on the raw rows (the full oracle, CUPED,
    ratios and corrections included, is test_experiment_oracle.py)."""
    e = make_experiment(seed=5, n_users=600)
    config, records = write_experiment(tmp_path, e, buckets=32)
    (route,) = experiment_summary(records, config, modelsplit_bin=cli)
    oracle = Oracle(e, 32)
    control, candidate = ARMS
    for name in OUTCOMES:
        m = route["metrics"][name]
        est = {arm: oracle.estimate(name, arm) for arm in ARMS}
        for arm in ARMS:
            assert math.isclose(m["models"][arm].get("rate", m["models"][arm].get("mean")), est[arm]["estimate"], rel_tol=REL)
            assert math.isclose(m["models"][arm]["se"], est[arm]["se"], rel_tol=REL)
        if name != "revenue":  # revenue's lift is CUPED-adjusted
            c = m["comparisons"][candidate]
            assert math.isclose(c["abs_lift"], est[candidate]["estimate"] - est[control]["estimate"], rel_tol=REL)
            assert math.isclose(c["se"], math.hypot(est[control]["se"], est[candidate]["se"]), rel_tol=REL)
    frame = summary_frame([route])
    assert set(frame["role"]) == {"outcome", "covariate"} and frame["cuped_theta"].notna().sum() == 1
    assert frame.loc[frame["metric"] == "errors_seen", "guardrail_p_value"].notna().sum() == 1


def test_routes_with_metrics_fills_the_router_defaults(tmp_path: Path) -> None:
    config, _ = write_experiment(tmp_path, make_experiment(n_users=10), buckets=100, correction="bh")
    (r,) = routes_with_metrics(config)
    assert r["analysis"] == {"unit": "user", "buckets": 100, "correction": "bh", "alpha": 0.05}
    by = {m["name"]: m for m in r["metrics"]}
    assert by["ctr"]["numerator"] == "clicked" and by["ctr"]["denominator"] == "impressions"
    assert by["revenue"]["cuped"] == "revenue_pre" and by["revenue_pre"]["role"] == "covariate"
    assert by["errors_seen"]["guardrail"] == {"margin": 0.05} and by["clicked"]["guardrail"] is None
    assert by["converted"]["mde"] is None and by["converted"]["higher_is_better"] is True


# ---- finding the router's command line ---------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    return write_experiment(tmp_path / "data", make_experiment(seed=3, n_users=40))


def test_the_router_is_found_by_argument_env_or_path(cli, small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, records = small
    expected = report_experiments(cli, config, records)
    monkeypatch.setenv("MODELSPLIT_BIN", str(cli))
    assert router_command()[1:] == [str(cli)]
    assert experiment_summary(records, config) == expected
    monkeypatch.setenv("MODELSPLIT_BIN", str(REPO))  # a checkout: its dist/cli/main.js
    assert experiment_summary(records, config) == expected
    # `modelsplit` on PATH (as `npm install -g` puts it there).
    monkeypatch.delenv("MODELSPLIT_BIN")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "modelsplit"
    shim.write_text(f'#!/bin/sh\nexec node "{cli}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert router_command() == [str(shim)]
    assert experiment_summary(records, config) == expected
    # The argument wins over both.
    monkeypatch.setenv("MODELSPLIT_BIN", str(tmp_path / "nowhere"))
    assert experiment_summary(records, config, modelsplit_bin=["node", str(cli)]) == expected


def test_a_missing_router_is_named(small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, records = small
    monkeypatch.setenv("MODELSPLIT_BIN", str(tmp_path / "nowhere" / "main.js"))
    with pytest.raises(RouterNotFoundError, match="MODELSPLIT_BIN=.*nowhere.*no such file"):
        experiment_summary(records, config)
    monkeypatch.delenv("MODELSPLIT_BIN")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RouterNotFoundError, match="MODELSPLIT_BIN is not set.*neither `modelsplit` nor `npx` is on PATH"):
        experiment_summary(records, config)
    with pytest.raises(RouterNotFoundError, match="modelsplit_bin=.*no such file"):
        experiment_summary(records, config, modelsplit_bin=tmp_path / "nowhere")


def test_the_routers_refusal_is_raised(cli, small, tmp_path: Path) -> None:
    config, records = small
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("cuped: revenue_pre", "cuped: clicked"), encoding="utf-8")
    with pytest.raises(ReportError, match="revenue_pre|covariate") as info:
        experiment_summary(records, bad, modelsplit_bin=cli)
    assert info.value.returncode != 0
    with pytest.raises(FileNotFoundError, match="no record file matches"):
        experiment_summary(tmp_path / "missing.jsonl", config, modelsplit_bin=cli)
