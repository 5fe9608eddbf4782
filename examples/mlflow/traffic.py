"""Simulated customers through the router, and what happened to them fed back as outcomes.

    python traffic.py                  # until the rollout of churn-v2 is promoted (at most --max-seconds)
    python traffic.py --users 500      # 500 customers, then stop

Each simulated customer (user id `customer-00001`, …) asks the router for a churn prediction
once: POST /models/churn/invocations with its features and `x-user-id`. The router answers from
churn-v1 or churn-v2 (the header `x-modelsplit-model` says which) and mirrors the request to the
shadow churn-v3. The business acts on the answer: a customer whose churn probability is 0.5 or
more gets a retention offer. Whether the customer stays is then drawn from the ground truth
(train.py's `churn_probability`: the same world the models were trained on, seeded per customer
so every run is the same), an offer keeping 80 % of those who would have left, and reported to
the router as the outcome `retained` (1 or 0) with the prediction's request id, through the
repository's Python client (`modelsplit.Feedback`).

Version 2 flags most churners (its class weights are balanced) and version 1 few, so under
version 2 more customers stay: about 90 % against 81 % in expectation (a run's few hundred
customers per arm scatter around that), although version 1 has the higher accuracy offline
(0.80 against 0.73). The router's experiment finds it (`/admin/experiments`: "candidate better"),
its rollout moves churn-v2 to 100 % and promotes it, and the alias `champion` moves to version 2.
Every few seconds this prints the customers so far per model, their retention, the verdict and
the rollout's state, and each decision the router takes with its reason.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stack import get_json, http  # noqa: E402
from train import FEATURES, churn_probability, generate_customers  # noqa: E402

OFFER_THRESHOLD = 0.5   # churn probability from which a customer gets a retention offer
OFFER_SAVES = 0.8       # share of would-be churners an offer keeps


def customer(i: int, seed: int) -> tuple[str, dict[str, Any], float, float]:
    """Customer i of the simulation: user id, the model's input row, the true churn probability
    and the uniform draw that decides whether the customer leaves (the same for every seed, i)."""
    rng = np.random.default_rng([seed, i])
    x = generate_customers(1, rng)
    row = {c: (float(x[c].iloc[0]) if c == "monthly_charges" else int(x[c].iloc[0])) for c in FEATURES}
    return f"customer-{i:05d}", row, float(churn_probability(x)[0]), float(rng.random())


def retained(p_true: float, draw: float, p_churn_predicted: float) -> int:
    """Whether the customer stays, given what the model answered."""
    offered = p_churn_predicted >= OFFER_THRESHOLD
    p_leave = p_true * (1 - OFFER_SAVES) if offered else p_true
    return 0 if draw < p_leave else 1


class Simulation:
    """Customers through the router at `router_url`, outcomes fed back with `modelsplit.Feedback`.
    Thread-safe: `run` calls `one` from several threads. `stats` holds per-model counts."""

    def __init__(self, router_url: str, route: str = "churn", path: str = "/models/churn/invocations",
                 seed: int = 7) -> None:
        try:
            import modelsplit  # the repository's client: pip install ./clients/python
        except ImportError:  # not installed: the checkout's copy (numpy, pandas, scipy, PyYAML are)
            sys.path.insert(0, str(HERE.parent.parent / "clients" / "python" / "src"))
            import modelsplit
        self.router_url = router_url.rstrip("/")
        self.path = path
        self.route = route
        self.seed = seed
        self.feedback = modelsplit.Feedback(self.router_url, route=route)
        self.lock = threading.Lock()
        self.stats: dict[str, dict[str, int]] = {}
        self.errors: list[str] = []
        self.sent = 0

    def one(self, i: int) -> dict[str, Any]:
        """Customer i: a prediction through the router, then the outcome fed back by request id."""
        user_id, row, p_true, draw = customer(i, self.seed)
        status, headers, body = http("POST", self.router_url + self.path, {"dataframe_records": [row]},
                                     headers={"x-user-id": user_id}, timeout=30)
        model = headers.get("x-modelsplit-model", "?")
        if status != 200:
            with self.lock:
                self.errors.append(f"{user_id}: {status} {body[:200]!r}")
            return {"user_id": user_id, "status": status, "model": model}
        p_churn = float(json.loads(body)["predictions"][0][1])  # [[p_stay, p_churn]]
        stayed = retained(p_true, draw, p_churn)
        self.feedback.send("retained", stayed, request_id=headers["x-request-id"])
        with self.lock:
            s = self.stats.setdefault(model, {"customers": 0, "offers": 0, "retained": 0})
            s["customers"] += 1
            s["offers"] += int(p_churn >= OFFER_THRESHOLD)
            s["retained"] += stayed
            self.sent += 1
        return {"user_id": user_id, "status": status, "model": model, "request_id": headers["x-request-id"],
                "p_churn": p_churn, "retained": stayed, "body": body}

    def run(self, users: Optional[int] = None, rate: Optional[float] = None, concurrency: int = 8,
            stop: Callable[[], bool] = lambda: False, start: int = 1) -> int:
        """Customers start, start+1, … at up to `rate` per second (None: as fast as `concurrency`
        allows) until `users` were sent or `stop()` is true; returns the next customer's index."""
        i = start
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            pending: set[concurrent.futures.Future] = set()
            while (users is None or i < start + users) and not stop():
                if rate is not None:
                    due = t0 + (i - start) / rate
                    if due > time.monotonic():
                        time.sleep(min(due - time.monotonic(), 0.2))
                        continue
                while len(pending) >= concurrency * 2:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        f.result()
                pending.add(pool.submit(self.one, i))
                i += 1
            for f in concurrent.futures.as_completed(pending):
                f.result()
        return i

    def flush(self) -> None:
        self.feedback.flush()

    def close(self) -> None:
        self.feedback.close()

    def summary(self) -> str:
        with self.lock:
            parts = [f"{m}: {s['customers']} customers, {s['offers'] / s['customers']:.0%} offered, "
                     f"{s['retained'] / s['customers']:.1%} retained" for m, s in sorted(self.stats.items()) if s["customers"]]
        return " · ".join(parts) or "no customers yet"


def experiment_line(admin_url: str, route: str = "churn", metric: str = "retained") -> str:
    exp = get_json(f"{admin_url}/admin/experiments/{route}")
    m = exp["metrics"][metric] if "metrics" in exp else exp["routes"][0]["metrics"][metric]
    cmp = next(iter(m["comparisons"].values()), {})
    seq = cmp.get("p_value_sequential")
    lift = cmp.get("abs_lift")
    extra = ""
    if lift is not None:
        extra = f" (lift {lift * 100:+.1f} points" + (f", sequential p {seq:.3g})" if seq is not None else ")")
    return f"{metric}: {m['verdict']}{extra}"


def main() -> None:
    import yaml
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(HERE / "modelsplit.yaml"), help="the router's config (for its ports and MLflow)")
    ap.add_argument("--users", type=int, help="send this many customers, then stop (default: until promoted)")
    ap.add_argument("--rate", type=float, default=25, help="customers per second (default 25)")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop after this long in any case (default 600)")
    ap.add_argument("--seed", type=int, default=7, help="the simulation's seed (default 7)")
    args = ap.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    router = f"http://{cfg['listen']['host']}:{cfg['listen']['port']}"
    admin = f"http://{cfg['admin']['host']}:{cfg['admin']['port']}"
    route = cfg["routes"][0]
    tracking_uri = (cfg.get("mlflow") or {}).get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        get_json(f"{admin}/readyz", timeout=3)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"the router's admin port {admin} does not answer ({e}): start it with `python up.py` first")

    if args.users is None and get_json(f"{admin}/admin/rollouts/{route['name']}").get("state") == "promoted":
        print("the rollout is already promoted: nothing to wait for.\n"
              "`python up.py --fresh` starts the walkthrough over; `python traffic.py --users N` sends N customers anyway.")
        return
    sim = Simulation(router, route=route["name"], path=route["path"] + "/invocations", seed=args.seed)
    print(f"sending customers to {router}{route['path']}/invocations at {args.rate:g}/s; outcomes to {router}/feedback", flush=True)
    seen_decisions: set[str] = set()
    state = {"rollout": {}}
    done = threading.Event()
    t0 = time.monotonic()

    def watch() -> None:
        next_status = time.monotonic() + 5
        while not done.is_set():
            try:
                r = get_json(f"{admin}/admin/rollouts/{route['name']}")
                state["rollout"] = r
                for d in r.get("decisions", []):
                    key = f"{d['at']} {d['kind']} {d['result']}"
                    if key not in seen_decisions and d["result"] != "hold":
                        seen_decisions.add(key)
                        print(f"  decision {d['at'][11:19]}  {d['kind']} {d['result']}: {d['reason']}", flush=True)
                if r.get("state") == "promoted" or (args.users is None and time.monotonic() - t0 > args.max_seconds):
                    done.set()
                if time.monotonic() >= next_status:
                    next_status += 5
                    print(f"{time.monotonic() - t0:5.0f}s  {sim.summary()}\n       {experiment_line(admin, route['name'])} | "
                          f"rollout {r['state']} at {r['percent']}% churn-v2", flush=True)
            except Exception as e:  # noqa: BLE001 - a status line missed is no reason to stop
                print(f"  (status: {e})", flush=True)
            done.wait(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        sim.run(users=args.users, rate=args.rate, stop=done.is_set)
        sim.flush()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        done.set()
        watcher.join(5)
        sim.close()
    print(f"\n{sim.sent} customers · {sim.summary()}")
    if sim.errors:
        print(f"{len(sim.errors)} requests failed, e.g. {sim.errors[0]}")
    print(experiment_line(admin, route["name"]))
    r = get_json(f"{admin}/admin/rollouts/{route['name']}")
    print(f"rollout: {r['state']}, weights in force {r['effective_weights']}")
    if tracking_uri:
        try:
            from mlflow import MlflowClient
            mv = MlflowClient(tracking_uri).get_model_version_by_alias("churn", "champion")
            print(f"MLflow: alias champion -> version {mv.version}"
                  + (f" (promoted at {mv.tags['modelsplit.promoted_at']})" if "modelsplit.promoted_at" in mv.tags else ""))
        except Exception as e:  # noqa: BLE001
            print(f"MLflow: could not read the alias champion ({e})")


if __name__ == "__main__":
    main()
