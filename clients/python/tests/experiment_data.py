"""A seeded experiment written as router record files, with the raw rows kept for an oracle.

Users (``user-<i>``) are each in arm ``a`` or ``b``; each sends a heavy-tailed number of requests
(1..40) and feeds back, per request, ``clicked`` (binary, the user's own propensity), ``impressions``
(continuous, 1..) and ``revenue`` (continuous, skewed, the user's own level); once per user
``revenue_pre`` (the CUPED covariate, correlated with the user's revenue level); and a few users
``errors_seen`` (binary, sparse: some buckets of an arm hold none, so the arms' bucket counts
differ). ``ctr`` is the ratio clicked / impressions. Arm ``b`` has a planted lift on ``clicked``
and ``revenue``; ``converted`` has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROUTE = "r"
ARMS = ("a", "b")

CONFIG = """\
listen: {{ host: 127.0.0.1, port: 0 }}
admin: {{ host: 127.0.0.1, port: 0 }}
models:
  a: {{ url: "http://127.0.0.1:9001" }}
  b: {{ url: "http://127.0.0.1:9002" }}
routes:
  - name: {route}
    path: /r
    split:
      - {{ model: a, weight: 50 }}
      - {{ model: b, weight: 50 }}
    analysis: {analysis}
    metrics:
      - {{ name: clicked, type: binary, mde: 0.02 }}
      - {{ name: converted, type: binary }}
      - {{ name: revenue, type: continuous, mde: 1.5, cuped: revenue_pre }}
      - {{ name: revenue_pre, type: continuous, role: covariate }}
      - {{ name: impressions, type: continuous }}
      - {{ name: ctr, type: ratio, numerator: clicked, denominator: impressions }}
      - {{ name: errors_seen, type: binary, higher_is_better: false, guardrail: {{ margin: 0.05 }} }}
"""

#: Outcome metrics (tested, in the family) and the covariate.
OUTCOMES = ("clicked", "converted", "revenue", "impressions", "ctr", "errors_seen")
COVARIATE = "revenue_pre"


@dataclass
class Experiment:
    """The raw rows: one per outcome, with its user and arm."""

    users: dict[str, str] = field(default_factory=dict)  # user id -> arm
    rows: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # metric -> [(user, arm, value)]
    records: list[dict[str, Any]] = field(default_factory=list)

    def outcome(self, user: str, arm: str, metric: str, value: float, ts: str) -> None:
        self.rows.setdefault(metric, []).append((user, arm, value))
        self.records.append({"type": "outcome", "schema": 1, "ts": ts, "route": ROUTE, "request_id": None,
                             "user_id": user, "model": arm, "metric": metric, "value": value, "attributed_by": "user_id"})


def make_experiment(seed: int = 17, n_users: int = 1600) -> Experiment:
    rng = np.random.default_rng(seed)
    e = Experiment()
    n_request = 0
    for i in range(n_users):
        user = f"user-{i}"
        arm = ARMS[int(rng.integers(2))]
        e.users[user] = arm
        propensity = float(rng.beta(1, 3))
        level = float(rng.lognormal(1.0, 0.6))  # the user's revenue level
        requests = int(min(40, 1 + np.floor(3 * rng.pareto(1.3))))
        click_lift = 0.03 if arm == "b" else 0.0
        revenue_lift = 1.08 if arm == "b" else 1.0
        errors = rng.random() < 0.06
        ts = f"2026-11-24T20:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"
        # The pre-period value: the user's level plus noise (not the outcome's own noise).
        e.outcome(user, arm, COVARIATE, round(level * float(rng.lognormal(0.0, 0.35)), 6), ts)
        for _ in range(requests):
            n_request += 1
            e.records.append({"type": "prediction", "schema": 1, "ts": ts, "request_id": f"req-{n_request}", "route": ROUTE,
                              "user_id": user, "assignment": "hash", "shares": {"a": 0.5, "b": 0.5},
                              "primary": {"model": arm, "status": 200, "latency_ms": 1, "prediction": None, "error": None},
                              "shadows": []})
            e.outcome(user, arm, "clicked", int(rng.random() < min(1.0, propensity + click_lift)), ts)
            e.outcome(user, arm, "impressions", int(1 + rng.poisson(2.0)), ts)
            e.outcome(user, arm, "revenue", round(level * revenue_lift * float(rng.gamma(2.0, 0.5)), 6), ts)
            if rng.random() < 0.3:
                e.outcome(user, arm, "converted", int(rng.random() < 0.5 * propensity + 0.05), ts)
            if errors:
                e.outcome(user, arm, "errors_seen", int(rng.random() < 0.2), ts)
    return e


def write_experiment(directory: Path, e: Experiment, *, buckets: int | None = None, correction: str | None = None) -> tuple[Path, Path]:
    """The records as a JSONL file and a config for them (``analysis`` with the given buckets and
    correction; the defaults where None)."""
    directory.mkdir(parents=True, exist_ok=True)
    records = directory / "records.jsonl"
    with open(records, "w", encoding="utf-8") as f:
        for r in e.records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    analysis = {"unit": "user", **({"buckets": buckets} if buckets is not None else {}),
                **({"correction": correction} if correction is not None else {})}
    config = directory / "router.yaml"
    config.write_text(CONFIG.format(route=ROUTE, analysis=json.dumps(analysis)), encoding="utf-8")
    return config, records
