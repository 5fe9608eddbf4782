"""The MLflow example end to end, against a real `mlflow server` (MLflow as pinned in requirements.txt).

    pip install -r examples/mlflow/requirements.txt ./clients/python
    npm ci && npm run build                                  # the router, from dist/
    python -m pytest examples/mlflow/test_e2e.py -v          # about a minute

Starts, on free 127.0.0.1 ports, an MLflow tracking server (a SQLite store and an artifact root
in a temporary directory), trains and registers churn versions 1-3 with train.py, serves
models:/churn/1, models:/churn/2 and models:/churn@challenger with `mlflow models serve
--env-manager local`, and the router (`node dist/cli/main.js serve`) on the walkthrough's
modelsplit.yaml with those ports and 1-second intervals. Then checks, in order:

  a. a prediction through the router is byte for byte what the model server answers directly;
  b. the records carry the shadow's answer compared with the primary's for MLflow's real
     response shape ({"predictions": [[p_stay, p_churn]]}, compared by argmax);
  c. simulated outcomes fed back with modelsplit.Feedback reach the verdict "candidate better";
  d. the router's run in MLflow (read with MlflowClient): params, metrics, tags, model inputs;
  e. after the operator promotes churn-v2, the alias `champion` is on version 2, with
     modelsplit.promoted_at and modelsplit.route tags;
  f. the same run goes on after the promotion, its rollout tags and counts consistent.

Every wait is a poll with a deadline. Every process is started in a process group of its own
and the group is stopped at the end (SIGTERM, then SIGKILL), also when a check fails or the
test gets a SIGTERM. The phases' durations are printed at the end of the run.
"""

from __future__ import annotations

import copy
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="MLflow is not installed: pip install -r examples/mlflow/requirements.txt ./clients/python")

import yaml  # noqa: E402  (PyYAML comes with mlflow)
from mlflow import MlflowClient  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stack import REPO, Stack, free_port, get_json, http, wait_until  # noqa: E402
from traffic import Simulation  # noqa: E402
from train import FEATURES, MODEL_NAME, train  # noqa: E402

ROUTE = "churn"
METRIC = "retained"
EXPERIMENT = "modelsplit-online"
VERSIONS = {"churn-v1": "1", "churn-v2": "2", "churn-v3": "3"}
TIMINGS: dict[str, float] = {}


class Phase:
    """Times a phase of the test into TIMINGS."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.t0 = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = time.monotonic() - self.t0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    workdir = tmp_path_factory.mktemp("mlflow-e2e")
    s = Stack(workdir, quiet=True)
    t0 = time.monotonic()
    # A SIGTERM (a CI timeout) is an interrupt, so the processes are stopped as for Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)

    def finish() -> None:
        signal.signal(signal.SIGTERM, previous)
        with Phase("stop every process"):
            s.stop()
        TIMINGS["whole run"] = time.monotonic() - t0
        report = request.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  {name:<48} {secs:6.1f} s" for name, secs in TIMINGS.items()]
        if report is not None:
            report.write_line("\nexamples/mlflow e2e phases:\n" + "\n".join(lines) + f"\n  logs in {workdir / 'logs'}")
        else:
            print("\n".join(lines))

    request.addfinalizer(finish)
    return s


@pytest.fixture(scope="module")
def tracking_uri(stack):
    with Phase("mlflow server up (GET /health)"):
        return stack.mlflow_server(free_port())


@pytest.fixture(scope="module")
def registered(tracking_uri):
    with Phase("train and register versions 1-3"):
        versions = train(tracking_uri, quiet=True)
    assert sorted(versions.values()) == ["1", "2", "3"]
    client = MlflowClient(tracking_uri)
    assert client.get_model_version_by_alias(MODEL_NAME, "challenger").version == "3"
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == "1"
    return versions


@pytest.fixture(scope="module")
def shipped_config():
    return yaml.safe_load((HERE / "modelsplit.yaml").read_text())


@pytest.fixture(scope="module")
def model_ports(stack, tracking_uri, registered, shipped_config):
    """Each model of the config served on a free port, as up.py serves it (by version, or by alias)."""
    from up import model_uri
    with Phase("mlflow models serve x3 up (GET /ping)"):
        procs = {name: (stack.serve_model(name, model_uri(m["mlflow"]), free_port(), tracking_uri))
                 for name, m in shipped_config["models"].items()}
        ports = {name: int(p.cmd[p.cmd.index("-p") + 1]) for name, p in procs.items()}
        for name, p in procs.items():
            Stack.wait_model(p, ports[name])
    return ports


@pytest.fixture(scope="module")
def router(stack, tracking_uri, model_ports, shipped_config):
    """The router on the walkthrough's config with this run's ports and short intervals; returns its URLs."""
    cfg = copy.deepcopy(shipped_config)
    cfg["listen"]["port"] = free_port()
    cfg["admin"]["port"] = free_port()
    for name, port in model_ports.items():
        cfg["models"][name]["url"] = f"http://127.0.0.1:{port}"
    cfg["mlflow"].update(tracking_uri=tracking_uri, log_interval="1s", refresh="2s")
    cfg["evaluation"]["interval"] = "1s"
    # The rollout holds at 50 % (a step lasts at least an hour) until test_e_promotion promotes it:
    # the verdict is reached on a steady 50/50 split, and the promotion happens when the test says.
    cfg["routes"][0]["rollout"]["step_interval"] = "1h"
    cfg["recording"]["path"] = str(stack.workdir / "router" / "records.jsonl")
    path = stack.workdir / "modelsplit.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    urls = {"router": f"http://127.0.0.1:{cfg['listen']['port']}", "admin": f"http://127.0.0.1:{cfg['admin']['port']}",
            "records": Path(cfg["recording"]["path"]), "config": cfg}
    with Phase("router up (GET /readyz)"):
        stack.router(path, urls["admin"])
    return urls


def body_for(i: int) -> dict:
    return {"dataframe_records": [{"tenure_months": 3 + i, "monthly_charges": 99.5 - i, "support_calls": i % 5,
                                   "month_to_month": i % 2, "num_products": 1 + i % 4}]}


def test_a_passthrough_is_byte_for_byte(router, model_ports):
    """The router returns the model server's body unchanged, for both arms of the split."""
    with Phase("a. passthrough byte for byte"):
        seen = set()
        for i in range(40):
            body = json.dumps(body_for(i)).encode()
            status, headers, through = http("POST", f"{router['router']}/models/churn/invocations", body,
                                            headers={"x-user-id": f"bytes-{i}", "content-type": "application/json"})
            assert status == 200, through
            model = headers["x-modelsplit-model"]
            seen.add(model)
            d_status, d_headers, direct = http("POST", f"http://127.0.0.1:{model_ports[model]}/invocations", body,
                                               headers={"content-type": "application/json"})
            assert d_status == 200
            assert through == direct, f"{model}: router gave {through!r}, the model server {direct!r}"
            assert headers["content-type"] == d_headers["content-type"]
            assert headers["x-request-id"]
            preds = json.loads(through)["predictions"]
            assert len(preds) == 1 and len(preds[0]) == 2 and abs(sum(preds[0]) - 1) < 1e-9  # [p_stay, p_churn]
        assert seen == {"churn-v1", "churn-v2"}, f"the 50/50 split sent 40 users only to {seen}"


@pytest.fixture(scope="module")
def experiment(router):
    """Simulated customers, 250 at a time, until the experiment finds churn-v2 better (it is, by about
    9 points of retention); returns the Simulation and /admin/experiments/churn at that point."""
    sim = Simulation(router["router"], seed=7)
    verdicts = []
    n = 1
    with Phase("c. traffic until a verdict"):
        deadline = time.monotonic() + 240
        while not verdicts or verdicts[-1] != "candidate better":
            assert time.monotonic() < deadline and sim.sent < 8000, \
                f"no verdict 'candidate better' after {sim.sent} customers ({verdicts}): {sim.summary()}"
            # At most 40 a second: the shadow's one `mlflow models serve` worker gets every request
            # (the primaries half each); past its max_in_flight the router drops mirrors.
            n = sim.run(users=250, rate=40, concurrency=4, start=n)
            sim.flush()
            exp = get_json(f"{router['admin']}/admin/experiments/{ROUTE}")
            verdicts.append(exp["metrics"][METRIC]["verdict"])
            assert not sim.errors, sim.errors[:5]
    sim.close()
    TIMINGS[f"   ({sim.sent} customers: {sim.summary()})"] = 0.0
    TIMINGS[f"   (verdicts after each 250: {', '.join(verdicts)})"] = 0.0
    return sim, exp


def read_predictions(path: Path, at_least: int) -> list[dict]:
    def enough():
        if not path.exists():
            return None
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        preds = [r for r in recs if r.get("type") == "prediction"]
        return preds if len(preds) >= at_least else None
    return wait_until(f"{at_least} prediction records in {path}", enough, timeout=30)


def test_b_records_compare_the_shadow(router, experiment):
    """Each record has the shadow churn-v3's answer beside the primary's, compared on the real shape."""
    sim, _ = experiment
    with Phase("b. records with the shadow's comparison"):
        preds = read_predictions(router["records"], sim.sent)
        agree: dict[str, list[bool]] = {"churn-v1": [], "churn-v2": []}
        dropped = 0
        for r in preds:
            assert r["route"] == ROUTE
            p = r["primary"]
            assert p["model"] in agree and p["status"] == 200 and p["error"] is None
            assert isinstance(p["prediction"], list) and len(p["prediction"][0]) == 2, p["prediction"]
            assert p.get("model_version") == VERSIONS[p["model"]], f"primary model_version: {p}"
            assert set(r["input"]["dataframe_records"][0]) == set(FEATURES)
            (s,) = r["shadows"]
            assert s["model"] == "churn-v3", s
            if "dropped" in s:  # the shadow's server was busy: the router skips it rather than queue
                assert s["dropped"] == "max_in_flight", s
                dropped += 1
                continue
            assert s["status"] == 200 and s["error"] is None, s
            assert s.get("model_version") == "3", f"shadow model_version: {s}"
            c = s["comparison"]
            assert isinstance(c["agree"], bool) and c["fraction_agree"] in (0, 1), c  # one row, compared by argmax
            assert 0 <= c["abs_diff_max"] < 1 and c["abs_diff_max"] == pytest.approx(
                max(abs(a - b) for a, b in zip(p["prediction"][0], s["prediction"][0])), abs=1e-12)
            assert c["agree"] == ((p["prediction"][0][1] >= 0.5) == (s["prediction"][0][1] >= 0.5))
            agree[p["model"]].append(c["agree"])
        # A busy machine may drop some mirrors (max_in_flight), never most of them.
        assert all(len(a) >= 100 for a in agree.values()), f"too few comparisons: {dropped} of {len(preds)} dropped"
        # Version 3 decides as version 2 does, and unlike version 1 for many customers.
        rate = {m: sum(a) / len(a) for m, a in agree.items()}
        assert rate["churn-v2"] > 0.97 and rate["churn-v1"] < 0.85, rate
        TIMINGS[f"   (shadow agreement with churn-v1 {rate['churn-v1']:.1%}, with churn-v2 {rate['churn-v2']:.1%}; "
                f"{dropped} dropped)"] = 0.0
        # The same records through the Python client: one column per shadow.
        import modelsplit
        recs = modelsplit.read_records(str(router["records"]))
        ours = recs.predictions[recs.predictions["request_id"].isin({r["request_id"] for r in preds})]
        assert len(ours) == len(preds)
        assert ours["shadow.churn-v3.agree"].notna().sum() == len(preds) - dropped
        assert set(ours["model_version"]) == {"1", "2"} and set(ours["shadow.churn-v3.model_version"]) == {"3"}
        assert len(recs.outcomes) >= sim.sent


def test_c_outcomes_reach_a_verdict(router, experiment):
    """Outcomes fed back by request id reach "candidate better" for churn-v2 (it truly is)."""
    sim, exp = experiment
    m = exp["metrics"][METRIC]
    assert m["verdict"] == "candidate better", m
    cmp = m["comparisons"]["churn-v2"]
    assert cmp["verdict"] == "candidate better" and cmp["abs_lift"] > 0 and cmp["p_value_sequential"] < 0.05, cmp
    # Every outcome counted, attributed to the model that answered.
    for model, s in sim.stats.items():
        assert m["models"][model]["outcomes"] == s["customers"], (model, m["models"][model], s)
        assert m["models"][model]["rate"] == pytest.approx(s["retained"] / s["customers"])


def route_run(client: MlflowClient):
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`modelsplit.route` = '{ROUTE}'")
    return runs[0] if len(runs) == 1 else (pytest.fail(f"{len(runs)} runs for route {ROUTE}: {[r.info.run_id for r in runs]}") if runs else None)


def test_d_the_router_logs_to_mlflow(router, tracking_uri, registered, experiment):
    """The online run, read back through MLflow's own client, says what /admin/experiments says."""
    sim, _ = experiment
    client = MlflowClient(tracking_uri)
    with Phase("d. the run in MLflow matches the router"):
        exp = get_json(f"{router['admin']}/admin/experiments/{ROUTE}")["metrics"][METRIC]

        def caught_up():
            run = route_run(client)
            if run is None:
                return None
            m = run.data.metrics
            # The last log has every outcome (the traffic stopped) and the verdict.
            if all(m.get(f"{model}.{METRIC}.n") == exp["models"][model]["outcomes"] for model in ("churn-v1", "churn-v2")) \
                    and run.data.tags.get(f"modelsplit.verdict.{METRIC}") == exp["verdict"]:
                return run
            return None
        run = wait_until("the router's run in MLflow with every outcome and the verdict", caught_up, timeout=30)

    assert run.info.status == "RUNNING"
    assert run.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id
    p = run.data.params
    assert p["split"] == "churn-v1:50,churn-v2:50"
    assert p["salt"] == "churn-mlflow-demo" and p["hash"] == "rendezvous" and p["control"] == "churn-v1"
    assert p["rollout.steps"] == "50,100"
    for model, version in VERSIONS.items():
        assert p[f"model.{model}"] == f"{MODEL_NAME}/{version}", (model, p)

    m = run.data.metrics
    for model in ("churn-v1", "churn-v2"):
        assert m[f"{model}.requests"] >= sim.stats[model]["customers"], (model, m)
        assert m[f"{model}.error_rate"] == 0
        assert 0 < m[f"{model}.latency_p50_ms"] <= m[f"{model}.latency_p99_ms"]
        assert m[f"{model}.share"] == pytest.approx(50)
        e = exp["models"][model]
        assert m[f"{model}.{METRIC}.mean"] == pytest.approx(e["rate"])
        assert m[f"{model}.{METRIC}.ci_low"] == pytest.approx(e["ci"][0])
        assert m[f"{model}.{METRIC}.ci_high"] == pytest.approx(e["ci"][1])
    cmp = exp["comparisons"]["churn-v2"]
    assert m[f"churn-v2.{METRIC}.lift"] == pytest.approx(cmp["abs_lift"]) or m[f"churn-v2.{METRIC}.lift"] == pytest.approx(cmp["rel_lift"])
    assert m[f"churn-v2.{METRIC}.p_value"] < 0.05
    assert f"churn-v1.{METRIC}.lift" not in m  # the control has no lift
    assert 0 <= m[f"{METRIC}.srm_p"] <= 1
    compared = [r for r in read_predictions(router["records"], sim.sent) if "comparison" in r["shadows"][0]]
    assert m["churn-v3.compared"] >= len(compared) and 0.5 < m["churn-v3.agreement"] < 1
    assert m["churn-v3.requests"] >= len(compared) and m["churn-v3.error_rate"] == 0 and m["churn-v3.latency_p99_ms"] > 0
    # The metrics were logged more than once (log_interval 1s): a history, not a single point.
    assert len(client.get_metric_history(run.info.run_id, "churn-v2.requests")) > 1

    t = run.data.tags
    assert t["modelsplit.route"] == ROUTE
    assert t[f"modelsplit.verdict.{METRIC}"] == "candidate better"
    assert t["modelsplit.rollout.state"] == "running" and t["modelsplit.rollout.percent"] == "50"
    assert json.loads(t["modelsplit.versions"]) == {m_: f"{MODEL_NAME}/{v}" for m_, v in VERSIONS.items()}

    # The run's inputs are the registered versions' logged models (MLflow 3). A version names its
    # logged model in `source` (models:/m-…); `model_id` is not filled in by this MLflow's SQL store.
    versions = [client.get_model_version(MODEL_NAME, v) for v in VERSIONS.values()]
    wanted = {mv.model_id or mv.source.removeprefix("models:/") for mv in versions}
    got = {i.model_id for i in client.get_run(run.info.run_id).inputs.model_inputs}
    assert wanted <= got, f"model inputs {got}, registered versions' models {wanted}"


@pytest.fixture(scope="module")
def promoted(router, tracking_uri, experiment):
    """The operator's promote of churn-v2 (POST /admin/rollouts/churn/promote); returns when it
    was sent and the run's latest counts (requests, comparisons, outcomes) just before."""
    client = MlflowClient(tracking_uri)
    run = wait_until("the router's run", lambda: route_run(client), timeout=30)
    before = {k: v for k, v in run.data.metrics.items() if k.endswith((".requests", ".compared", ".n"))}
    at = datetime.now().astimezone()
    status, _, body = http("POST", f"{router['admin']}/admin/rollouts/{ROUTE}/promote")
    assert status == 200, body
    rollout = get_json(f"{router['admin']}/admin/rollouts/{ROUTE}")
    assert rollout["state"] == "promoted" and rollout["effective_shares"]["churn-v2"] == 1, rollout
    return {"at": at, "before": before}


def test_e_promotion_moves_the_alias(tracking_uri, promoted):
    """The operator promotes churn-v2: the alias champion moves to version 2, tagged by the router."""
    client = MlflowClient(tracking_uri)
    with Phase("e. promote, alias moved"):
        # The alias is set first, then the version's tags: wait for all three.
        mv = wait_until("alias champion on version 2, tagged modelsplit.promoted_at and modelsplit.route",
                        lambda: (lambda v: v if v.version == "2" and {"modelsplit.promoted_at", "modelsplit.route"} <= set(v.tags)
                                 else None)(client.get_model_version_by_alias(MODEL_NAME, "champion")),
                        timeout=30)
    assert mv.tags["modelsplit.route"] == ROUTE
    promoted_at = datetime.fromisoformat(mv.tags["modelsplit.promoted_at"].replace("Z", "+00:00"))
    assert abs((promoted_at - promoted["at"]).total_seconds()) < 60, (promoted_at, promoted["at"])
    assert client.get_model_version_by_alias(MODEL_NAME, "challenger").version == "3"  # untouched
    assert "modelsplit.promoted_at" not in client.get_model_version(MODEL_NAME, "1").tags


def test_f_the_run_after_the_promotion(tracking_uri, promoted):
    """The same run goes on after the promotion: its rollout tags agree with the shares, its counts are kept."""
    client = MlflowClient(tracking_uri)
    with Phase("f. the run after the promotion"):
        run = wait_until("a log of the run after the promotion (churn-v2.share 100)",
                         lambda: (lambda r: r if r and r.data.metrics.get("churn-v2.share") == 100 else None)(route_run(client)),
                         timeout=30)
    t, m = run.data.tags, run.data.metrics
    assert run.info.status == "RUNNING"
    assert t["modelsplit.rollout.state"] == "promoted"
    assert m["churn-v1.share"] == 0
    problems = []
    # The candidate has every user now (churn-v2.share is 100, effective_shares in /admin/rollouts 1).
    if t["modelsplit.rollout.percent"] != "100":
        problems.append(f"tag modelsplit.rollout.percent is {t['modelsplit.rollout.percent']!r} after the promotion, "
                        "while churn-v2.share is 100")
    # No new experiment began (same run, same outcomes): counts since it began cannot go down.
    went_down = {k: (v, m.get(k)) for k, v in promoted["before"].items() if (m.get(k) or 0) < v}
    if went_down:
        problems.append(f"counts that went down after the promotion (before, after): {went_down}")
    assert not problems, "\n".join(problems)
