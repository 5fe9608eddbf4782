"""A/B statistics from record files, read from their one owner: the router's own analysis.

:func:`experiment_summary` runs ``modelsplit report --config CONFIG FILES --json`` (the router's
command line) and returns what it prints under ``experiments``: the numbers ``GET
/admin/experiments`` answers, computed by the same code (``src/experiment`` in the router). Nothing
here computes a statistic: per route and metric, each arm's estimate with its standard error and
interval at the unit of analysis (users hashed into buckets, or requests), lifts, fixed-horizon
and always-valid p-values with the family's adjusted ones, CUPED, guardrails, the sample-ratio
check and the verdicts are the router's, exactly.

The router's command line is found, in order: the ``modelsplit_bin`` argument, the environment
variable ``MODELSPLIT_BIN``, ``modelsplit`` on ``PATH``, then ``npx --no-install modelsplit`` (a
project with the router installed in ``node_modules``). ``modelsplit_bin`` and ``MODELSPLIT_BIN``
may name the router's ``dist/cli/main.js`` (run with ``node``), a checkout of the router (its
``dist/cli/main.js``), an executable, or a command line such as ``"npx modelsplit"``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from .records import PathsOrGlob, Records, expand_paths

__all__ = [
    "experiment_summary",
    "summary_frame",
    "load_config",
    "routes_with_metrics",
    "router_command",
    "RouterNotFoundError",
    "ReportError",
]

ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any]]
RouterCommand = Union[str, "os.PathLike[str]", Sequence[str]]

_GLOB_CHARS = frozenset("*?[")


class RouterNotFoundError(FileNotFoundError):
    """The router's command line (``modelsplit``) could not be found; the message says where it
    was looked for and how to point at it."""


class ReportError(RuntimeError):
    """``modelsplit report`` failed: ``returncode`` and ``stderr`` say why."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def load_config(config: ConfigLike) -> dict[str, Any]:
    """The router config as a dict: read from a YAML file, or given as a dict (the file's content,
    or ``GET /admin/config``'s answer, whose ``config`` is taken). Not validated: the router
    validates it when :func:`experiment_summary` runs its report."""
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
    """The routes that declare metrics, as the config declares them, with the router's defaults
    filled in (to list or filter what :func:`experiment_summary` will report; the statistics
    themselves come from the router): ``name``, ``split`` (``[(model, weight)]``), ``control``
    (the split's first model unless set), ``analysis`` (``unit``: user where the route reads a user
    id, which it does unless ``user_id: []``, else request; ``buckets`` 64; ``correction`` holm;
    ``alpha`` 0.05) and ``metrics`` (``type`` binary, ``mde`` None, ``higher_is_better`` True,
    ``role`` outcome, ``numerator``, ``denominator``, ``cuped`` and ``guardrail`` None unless set)."""
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
            guardrail = m.get("guardrail")
            ms.append({
                "name": str(m["name"]),
                "type": m.get("type") or "binary",
                "mde": m.get("mde"),
                "higher_is_better": True if m.get("higher_is_better") is None else bool(m["higher_is_better"]),
                "role": m.get("role") or "outcome",
                "numerator": m.get("numerator"),
                "denominator": m.get("denominator"),
                "cuped": m.get("cuped"),
                "guardrail": {"margin": guardrail["margin"]} if isinstance(guardrail, Mapping) else None,
            })
        a = r.get("analysis") or {}
        has_user_id = r.get("user_id", "header:x-user-id") not in ([], None, "")
        analysis = {
            "unit": a.get("unit") or ("user" if has_user_id else "request"),
            "buckets": a.get("buckets") or 64,
            "correction": a.get("correction") or "holm",
            "alpha": a.get("alpha") or 0.05,
        }
        out.append({"name": str(r["name"]), "split": split, "control": control, "analysis": analysis, "metrics": ms})
    return out


# ---- the router's command line -------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RouterNotFoundError("the router's command line is a Node.js script, but `node` is not on PATH; install Node.js (>= 20.18.1)")
    return node


def _command_from(value: RouterCommand, origin: str) -> list[str]:
    """The command line a ``modelsplit_bin`` argument or ``MODELSPLIT_BIN`` names."""
    if not isinstance(value, (str, os.PathLike)):
        parts = [os.fspath(p) for p in value]
        if not parts:
            raise RouterNotFoundError(f"{origin} is an empty command")
        return parts
    text = os.fspath(value)
    path = Path(text).expanduser()
    if path.is_dir():
        main = path / "dist" / "cli" / "main.js"
        if main.is_file():
            return [_node(), str(main)]
        raise RouterNotFoundError(f"{origin}={text!r} is a directory without dist/cli/main.js; run `npm run build` there, "
                                  "or name the router's dist/cli/main.js or its `modelsplit` executable")
    if path.is_file():
        return [_node(), str(path)] if path.suffix in (".js", ".mjs", ".cjs") else [str(path)]
    parts = shlex.split(text)
    if parts and shutil.which(parts[0]) is not None:
        return parts
    raise RouterNotFoundError(f"{origin}={text!r}: no such file, directory or command; name the router's dist/cli/main.js, "
                              "its `modelsplit` executable, or a command line such as 'npx modelsplit'")


def router_command(modelsplit_bin: Optional[RouterCommand] = None) -> list[str]:
    """The command line that runs the router's CLI: ``modelsplit_bin``, else ``MODELSPLIT_BIN``,
    else ``modelsplit`` on PATH, else ``npx --no-install modelsplit``. Raises
    :class:`RouterNotFoundError`, naming what was looked for, when none is there."""
    if modelsplit_bin is not None:
        return _command_from(modelsplit_bin, "modelsplit_bin")
    env = os.environ.get("MODELSPLIT_BIN")
    if env:
        return _command_from(env, "MODELSPLIT_BIN")
    exe = shutil.which("modelsplit")
    if exe is not None:
        return [exe]
    npx = shutil.which("npx")
    if npx is not None:
        return [npx, "--no-install", "modelsplit"]
    raise RouterNotFoundError(
        "the router's command line was not found: no modelsplit_bin argument, MODELSPLIT_BIN is not set, "
        "and neither `modelsplit` nor `npx` is on PATH. Install the router (npm install modelsplit, or "
        "npm run build in a checkout) and set MODELSPLIT_BIN to its dist/cli/main.js, or pass modelsplit_bin=")


# ---- records given as DataFrames -----------------------------------------------------------------


def _value(v: Any) -> Any:
    """A DataFrame cell as JSON: None for every kind of missing, plain Python numbers."""
    if v is None:
        return None
    try:
        import pandas as pd

        if v is pd.NaT or v is pd.NA:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    return v


def _ts(v: Any) -> Optional[str]:
    v = _value(v)
    if v is None:
        return None
    if hasattr(v, "isoformat"):
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    return str(v)


def _write_records(records: Records, path: Path) -> None:
    """Writes a :class:`Records`' predictions and outcomes back as record lines, the two merged
    in ``ts`` order (each keeping its own order), as the router wrote them."""
    p = records.predictions
    o = records.outcomes

    def column(frame: Any, name: str) -> list[Any]:
        return list(frame[name]) if name in frame.columns else [None] * len(frame)

    preds = zip(column(p, "ts"), column(p, "request_id"), column(p, "route"), column(p, "user_id"),
                column(p, "assignment"), column(p, "shares"), column(p, "model"), column(p, "status"),
                column(p, "latency_ms"))
    outs = zip(column(o, "ts"), column(o, "route"), column(o, "request_id"), column(o, "user_id"), column(o, "model"),
               column(o, "metric"), column(o, "value"), column(o, "attributed_by"), column(o, "bucket"), column(o, "counted"))

    def prediction(row: tuple[Any, ...]) -> dict[str, Any]:
        ts, request_id, route, user_id, assignment, shares, model, status, latency = row
        r: dict[str, Any] = {"type": "prediction", "schema": 1, "ts": _ts(ts), "request_id": _value(request_id),
                             "route": route, "user_id": _value(user_id), "assignment": _value(assignment)}
        shares = _value(shares)
        if isinstance(shares, Mapping):
            r["shares"] = {str(k): float(v) for k, v in shares.items()}
        r["primary"] = {"model": model, "status": _value(status), "latency_ms": _value(latency), "prediction": None, "error": None}
        r["shadows"] = []
        return r

    def outcome(row: tuple[Any, ...]) -> dict[str, Any]:
        ts, route, request_id, user_id, model, metric, value, attributed_by, bucket, counted = row
        r: dict[str, Any] = {"type": "outcome", "schema": 1, "ts": _ts(ts), "route": route, "request_id": _value(request_id),
                             "user_id": _value(user_id), "model": model, "metric": metric, "value": float(value)}
        if _value(attributed_by) is not None:
            r["attributed_by"] = attributed_by
        if _value(bucket) is not None:
            r["bucket"] = int(bucket)
        if _value(counted) is False:
            r["counted"] = False
        return r

    def later(a: Any, b: Any) -> bool:
        """Whether timestamp a is after b (missing ones are never after)."""
        a, b = _value(a), _value(b)
        return a is not None and b is not None and a > b

    with open(path, "w", encoding="utf-8") as f:
        def write(r: dict[str, Any]) -> None:
            f.write(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n")

        next_p = next(preds, None)
        next_o = next(outs, None)
        while next_p is not None or next_o is not None:
            if next_p is not None and (next_o is None or not later(next_p[0], next_o[0])):
                write(prediction(next_p))
                next_p = next(preds, None)
            else:
                assert next_o is not None
                write(outcome(next_o))
                next_o = next(outs, None)


def _record_paths(records: PathsOrGlob) -> list[str]:
    """The record paths to give the report: each path as given (the report reads its rotated
    siblings), each glob pattern's matches; FileNotFoundError as :func:`read_records` raises it."""
    expand_paths(records)  # every path or pattern names a file, or FileNotFoundError says which does not
    items = [records] if isinstance(records, (str, os.PathLike)) else list(records)
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if any(c in _GLOB_CHARS for c in text) and not os.path.exists(text):
            import glob

            out.extend(sorted(glob.glob(text)))
        else:
            out.append(text)
    return out


def _run_report(command: list[str], config: str, paths: list[str]) -> list[dict[str, Any]]:
    args = [*command, "report", "--config", config, "--json", *paths]
    try:
        done = subprocess.run(args, capture_output=True, text=True, encoding="utf-8", stdin=subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise RouterNotFoundError(f"cannot run {command[0]!r}: {err}") from err
    if done.returncode != 0:
        hint = ("; is the router installed in this project (npm install modelsplit)? Otherwise set MODELSPLIT_BIN to its "
                "dist/cli/main.js" if command[1:3] == ["--no-install", "modelsplit"] else "")
        raise ReportError(f"`{shlex.join(args[:len(command) + 4])} ...` exited with {done.returncode}: "
                          f"{done.stderr.strip() or done.stdout.strip()}{hint}", done.returncode, done.stderr)
    try:
        doc = json.loads(done.stdout)
    except ValueError as err:
        raise ReportError(f"`{shlex.join(command)} report` printed no JSON document: {done.stdout[:200]!r}", 0, done.stderr) from err
    experiments = doc.get("experiments") if isinstance(doc, dict) else None
    if not isinstance(experiments, list):
        raise ReportError(f"`{shlex.join(command)} report --config` printed no experiments: is it an older router?", 0, done.stderr)
    return experiments


def experiment_summary(records: Union[Records, PathsOrGlob], config: ConfigLike, *,
                       modelsplit_bin: Optional[RouterCommand] = None) -> list[dict[str, Any]]:
    """The A/B statistics of every route of ``config`` that declares metrics, over ``records``:
    what ``modelsplit report --config CONFIG FILES --json`` prints under ``experiments`` (and
    ``GET /admin/experiments`` answers), as parsed JSON: a list of
    ``{"route", "control", "unit", "buckets", "correction", "alpha", "family", "srm", "metrics":
    {name: {...}}, "verdict"}`` with None where the router prints null. It runs the router's own
    report, so every number is the router's.

    ``records``: record files (paths or a glob; each path's rotated siblings are read too), given to
    the report as they are; or a :class:`Records` from :func:`~modelsplit.read_records`, whose
    DataFrames may be filtered first (a date range, say): its prediction and outcome rows are
    written back as records (merged in ``ts`` order) to a temporary file for the report.
    ``config``: the router's YAML file, or its content as a dict (``GET /admin/config``'s answer
    works too). ``modelsplit_bin``: the router's command line (see the module's documentation for
    how it is found otherwise).

    Raises :class:`RouterNotFoundError` when the router's command line cannot be found, and
    :class:`ReportError` when the report fails (an invalid config, an unreadable file).

    >>> s = experiment_summary("data/predictions.jsonl", "config/router.yaml")   # doctest: +SKIP
    >>> s[0]["metrics"]["converted"]["verdict"]                                  # doctest: +SKIP
    'candidate better'
    """
    command = router_command(modelsplit_bin)
    with tempfile.TemporaryDirectory(prefix="modelsplit-") as tmp:
        config_path = _config_path(config, Path(tmp))
        if isinstance(records, Records):
            path = Path(tmp) / "records.jsonl"
            _write_records(records, path)
            paths = [str(path)]
        else:
            paths = _record_paths(records)
        return _run_report(command, config_path, paths)


def _config_path(config: ConfigLike, tmp: Path) -> str:
    """A file the report can read the config from: the YAML file itself (the router reads and
    validates it), or a JSON file (JSON is YAML) with the dict, or with a file's ``GET
    /admin/config`` answer unwrapped."""
    if not isinstance(config, Mapping):
        import yaml

        try:
            with open(os.fspath(config), encoding="utf-8") as f:
                raw = yaml.safe_load(f)
        except yaml.YAMLError:
            return os.fspath(config)  # the router says what is wrong with it
        if not (isinstance(raw, dict) and "routes" not in raw and isinstance(raw.get("config"), Mapping)):
            return os.fspath(config)
        config = raw
    path = tmp / "config.json"
    path.write_text(json.dumps(load_config(config), default=str), encoding="utf-8")
    return str(path)


def summary_frame(summary: list[dict[str, Any]]) -> Any:
    """:func:`experiment_summary`'s result as one tidy DataFrame: a row per (route, metric, model)
    with the arm's numbers (``estimate`` is the rate or mean, ``se`` its standard error at the unit
    of analysis) and, for candidates, the comparison with the control (``lift_se``, ``df``, raw
    and adjusted p-values, CUPED's ``cuped_theta``, ``unadjusted_abs_lift`` and
    ``variance_reduction``, a guardrail's ``guardrail_p_value`` and ``non_inferior``)."""
    import pandas as pd

    rows = []
    for route in summary:
        for metric, rep in route["metrics"].items():
            for model, m in rep["models"].items():
                cmp = rep["comparisons"].get(model, {})
                cuped = cmp.get("cuped") or {}
                guardrail = cmp.get("guardrail") or {}
                rows.append({
                    "route": route["route"], "metric": metric, "type": rep["type"], "role": rep.get("role"),
                    "unit": rep.get("unit"), "model": model, "control": model == rep["control"], "weight": m["weight"],
                    "assignments": m["assignments"], "users": m.get("users"), "outcomes": m["outcomes"],
                    "buckets": m.get("buckets"), "estimate": m.get("rate", m.get("mean")), "se": m.get("se"),
                    "ci_low": m["ci"][0], "ci_high": m["ci"][1],
                    "abs_lift": cmp.get("abs_lift"), "abs_lift_low": (cmp.get("abs_lift_ci") or [None, None])[0],
                    "abs_lift_high": (cmp.get("abs_lift_ci") or [None, None])[1], "rel_lift": cmp.get("rel_lift"),
                    "lift_se": cmp.get("se"), "df": cmp.get("df"),
                    "p_value": cmp.get("p_value"), "p_value_adjusted": cmp.get("p_value_adjusted"),
                    "p_value_sequential": cmp.get("p_value_sequential"),
                    "p_value_sequential_adjusted": cmp.get("p_value_sequential_adjusted"),
                    "required_per_arm": cmp.get("required_per_arm"), "remaining": cmp.get("remaining"),
                    "cuped_theta": cuped.get("theta"), "unadjusted_abs_lift": cuped.get("unadjusted_abs_lift"),
                    "variance_reduction": cuped.get("variance_reduction"),
                    "guardrail_p_value": guardrail.get("p_value"), "non_inferior": guardrail.get("non_inferior"),
                    "verdict": cmp.get("verdict"), "srm_p_value": rep["srm"]["p_value"], "route_verdict": rep["verdict"],
                })
    return pd.DataFrame(rows)
