"""A/B statistics from record files: what ``modelsplit report --config CONFIG FILES --json`` prints
under ``experiments`` (and ``GET /admin/experiments`` answers), computed in Python.

Per route with ``metrics`` and per metric: each arm's weight, assignments (prediction records
assigned by hash), outcomes, rate (binary; Wilson interval) or mean (continuous; Student t
interval); each candidate against the control: absolute and relative lift with intervals, the
two-proportion z-test or Welch's t-test p-value, the always-valid mixture-SPRT p-value, the sample
size per arm needed for the metric's ``mde`` and what remains of it, and a verdict; the
sample-ratio-mismatch test; and the route's verdict.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from . import _stats as st
from .records import PathsOrGlob, Records, as_outcome_record, as_prediction_record, iter_records

__all__ = ["experiment_summary", "summary_frame", "load_config", "routes_with_metrics"]

ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any]]

_ARRAY_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")


def load_config(config: ConfigLike) -> dict[str, Any]:
    """The router config as a dict: read from a YAML file, or given as a dict (the file's content,
    or ``GET /admin/config``'s answer, whose ``config`` is taken)."""
    if isinstance(config, Mapping):
        doc = dict(config)
    else:
        import yaml

        with open(os.fspath(config), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if not isinstance(doc, dict):
            raise ValueError(f"{os.fspath(config)}: not a YAML mapping")
    if "routes" not in doc and isinstance(doc.get("config"), Mapping):
        doc = dict(doc["config"])
    if not isinstance(doc.get("routes"), list):
        raise ValueError("config has no routes list")
    return doc


def routes_with_metrics(config: ConfigLike) -> list[dict[str, Any]]:
    """The routes that declare metrics, with the router's defaults filled in: ``name``, ``split``
    (``[(model, weight)]``), ``control`` (the split's first model unless set) and ``metrics``
    (``type`` binary, ``mde`` None, ``higher_is_better`` True unless set)."""
    out = []
    for i, r in enumerate(load_config(config)["routes"]):
        if not isinstance(r, Mapping):
            raise ValueError(f"routes[{i}] is not a mapping")
        metrics = r.get("metrics") or []
        if not metrics:
            continue
        split = [(str(s["model"]), s["weight"]) for s in r["split"]]
        control = r.get("control")
        if control is None:
            control = split[0][0]
        if control not in [m for m, _ in split]:
            raise ValueError(f"route {r['name']}: control {control!r} is not in its split")
        ms = []
        for m in metrics:
            ms.append({
                "name": str(m["name"]),
                "type": m.get("type") or "binary",
                "mde": m.get("mde"),
                "higher_is_better": True if m.get("higher_is_better") is None else bool(m["higher_is_better"]),
            })
        out.append({"name": str(r["name"]), "split": split, "control": control, "metrics": ms})
    return out


def _js_key_order(keys: Sequence[str]) -> list[str]:
    """Keys in the order JavaScript's Object.keys gives them: integer-like keys first, ascending,
    then the others in insertion order (it decides the order of arms in the report)."""
    index = [k for k in keys if _ARRAY_INDEX.match(k) and int(k) < 2**32 - 1]
    rest = [k for k in keys if k not in set(index)]
    return sorted(index, key=int) + rest


def _default_mde(metric: Mapping[str, Any], control_mean: Any) -> float:
    if metric["mde"] is not None:
        return float(metric["mde"])
    if metric["type"] == "binary":
        return 0.01
    m = abs(float(control_mean))
    return 0.05 * m if np.isfinite(m) and m > 0 else 1.0


def _interval(low: Any, high: Any) -> list[Optional[float]]:
    return [st.finite(low), st.finite(high)]


def _analyse_experiment(*, type: str, control: str, totals: dict[str, st.Totals], assignments: dict[str, int],
                        weights: dict[str, Any], mde: float, higher_is_better: bool, alpha: float = 0.05,
                        power: float = 0.8) -> dict[str, Any]:
    names = list(weights)  # the router's Object.keys(weights), already in its order
    models: dict[str, Any] = {}
    for name in names:
        t = totals[name]
        base = {"weight": weights[name], "assignments": assignments[name], "outcomes": t.n}
        if type == "binary":
            rate, low, high = st.wilson_interval(t.sum, t.n)
            models[name] = {**base, "rate": st.finite(rate), "ci": _interval(low, high)}
        else:
            mean, low, high = st.mean_interval(t)
            models[name] = {**base, "mean": st.finite(mean), "ci": _interval(low, high)}

    srm = st.srm_test([assignments[n] for n in names], [float(weights[n]) for n in names])

    c = totals[control]
    comparisons: dict[str, Any] = {}
    for name in names:
        if name == control:
            continue
        cand = totals[name]
        if type == "binary":
            lift = st.two_proportion_z_test(c, cand)
            required = st.required_sample_size(baseline_rate=st.F(c.sum) / st.F(c.n), mde=mde, alpha=alpha, power=power)
        else:
            lift = st.welch_t_test(c, cand)
            sd = np.sqrt((st.moments(c).variance + st.moments(cand).variance) / 2)
            required = st.required_sample_size(sd=sd, mde=mde, alpha=alpha, power=power)
        p_seq = st.msprt_p_value(c, cand, mde=mde)
        v = st.verdict(srm_mismatch=srm["mismatch"], control_outcomes=c.n, candidate_outcomes=cand.n,
                       p_sequential=p_seq, abs_lift=lift["abs_lift"], required_per_arm=required, alpha=alpha,
                       higher_is_better=higher_is_better)
        comparisons[name] = {
            "abs_lift": st.finite(lift["abs_lift"]),
            "abs_lift_ci": _interval(lift["abs_lift_low"], lift["abs_lift_high"]),
            "rel_lift": st.finite(lift["rel_lift"]),
            "rel_lift_ci": _interval(lift["rel_lift_low"], lift["rel_lift_high"]),
            "p_value": st.finite(lift["p_value"]),
            "p_value_sequential": st.finite(p_seq),
            "required_per_arm": st.finite(required),
            "remaining": st.finite(st.remaining_samples(required, min(c.n, cand.n))),
            "verdict": v,
        }
    return {
        "type": type,
        "control": control,
        "alpha": alpha,
        "mde": mde,
        "models": models,
        "comparisons": comparisons,
        "srm": srm,
        "verdict": "sample ratio mismatch: investigate" if srm["mismatch"] else st.combine_verdicts([x["verdict"] for x in comparisons.values()]),
    }


class _Tally:
    """Assignments per (route, model) and stable outcome totals per (route, model, metric)."""

    def __init__(self) -> None:
        self.assignments: dict[tuple[str, str], int] = {}
        self.outcomes: dict[tuple[str, str, str], st.Totals] = {}

    def assigned(self, route: str, model: str, count: int = 1) -> None:
        key = (route, model)
        self.assignments[key] = self.assignments.get(key, 0) + count

    def outcome(self, route: str, model: str, metric: str, value: float) -> None:
        key = (route, model, metric)
        t = self.outcomes.get(key)
        if t is None:
            t = self.outcomes[key] = st.Totals()
        t.add(float(value))

    def add_record(self, r: dict[str, Any]) -> None:
        p = as_prediction_record(r)
        if p is not None:
            if p.get("assignment") == "hash":
                self.assigned(p["route"], p["primary"]["model"])
            return
        o = as_outcome_record(r)
        if o is not None:
            self.outcome(o["route"], o["model"], o["metric"], o["value"])


def experiment_summary(records: Union[Records, PathsOrGlob], config: ConfigLike) -> list[dict[str, Any]]:
    """The A/B statistics of every route of ``config`` that declares metrics, over ``records``:
    the same numbers and verdicts as ``modelsplit report --config CONFIG FILES --json`` prints under
    ``experiments`` (a list of ``{"route", "control", "metrics": {name: {...}}}`` with None where
    the router prints null).

    ``records``: record files (paths or a glob, streamed: any size) or a :class:`Records` from
    :func:`~modelsplit.read_records`, whose DataFrames may be filtered first (a date range, say):
    assignments are its prediction rows with ``assignment == "hash"``, outcomes its outcome rows in
    order. ``config``: the router's YAML file, or its content as a dict (``GET /admin/config``'s
    answer works too).

    >>> s = experiment_summary("data/predictions.jsonl", "config/router.yaml")   # doctest: +SKIP
    >>> s[0]["metrics"]["converted"]["verdict"]                                  # doctest: +SKIP
    'candidate better'
    """
    routes = routes_with_metrics(config)
    tally = _Tally()
    if isinstance(records, Records):
        p = records.predictions
        if len(p) > 0:
            hashed = p[p["assignment"] == "hash"]
            sizes = hashed.groupby(["route", "model"], sort=False).size()
            for key, count in zip(sizes.index, sizes.to_numpy()):
                route, model = key
                tally.assigned(str(route), str(model), int(count))
        o = records.outcomes
        for route, model, metric, value in zip(o["route"], o["model"], o["metric"], o["value"]):
            tally.outcome(route, model, metric, value)
    else:
        for r in iter_records(records):
            tally.add_record(r)

    out = []
    with np.errstate(all="ignore"):
        for r in routes:
            name = r["name"]
            weights: dict[str, Any] = {}
            for model, w in r["split"]:
                weights[model] = w
            weights = {k: weights[k] for k in _js_key_order(list(weights))}
            metrics: dict[str, Any] = {}
            for metric in r["metrics"]:
                totals = {m: tally.outcomes.get((name, m, metric["name"])) or st.Totals() for m in weights}
                assignments = {m: tally.assignments.get((name, m), 0) for m in weights}
                mde = _default_mde(metric, st.moments(totals[r["control"]]).mean)
                metrics[metric["name"]] = _analyse_experiment(
                    type=metric["type"], control=r["control"], totals=totals, assignments=assignments,
                    weights=weights, mde=mde, higher_is_better=metric["higher_is_better"])
            out.append({"route": name, "control": r["control"], "metrics": metrics})
    return out


def summary_frame(summary: list[dict[str, Any]]) -> Any:
    """:func:`experiment_summary`'s result as one tidy DataFrame: a row per (route, metric, model)
    with the arm's numbers and, for candidates, the comparison with the control."""
    import pandas as pd

    rows = []
    for route in summary:
        for metric, rep in route["metrics"].items():
            for model, m in rep["models"].items():
                cmp = rep["comparisons"].get(model, {})
                rows.append({
                    "route": route["route"], "metric": metric, "type": rep["type"], "model": model,
                    "control": model == rep["control"], "weight": m["weight"], "assignments": m["assignments"],
                    "outcomes": m["outcomes"], "estimate": m.get("rate", m.get("mean")),
                    "ci_low": m["ci"][0], "ci_high": m["ci"][1],
                    "abs_lift": cmp.get("abs_lift"), "abs_lift_low": (cmp.get("abs_lift_ci") or [None, None])[0],
                    "abs_lift_high": (cmp.get("abs_lift_ci") or [None, None])[1], "rel_lift": cmp.get("rel_lift"),
                    "p_value": cmp.get("p_value"), "p_value_sequential": cmp.get("p_value_sequential"),
                    "required_per_arm": cmp.get("required_per_arm"), "remaining": cmp.get("remaining"),
                    "verdict": cmp.get("verdict"), "srm_p_value": rep["srm"]["p_value"], "route_verdict": rep["verdict"],
                })
    return pd.DataFrame(rows)
