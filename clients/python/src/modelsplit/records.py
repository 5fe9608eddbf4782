"""Reading the router's JSONL record files into pandas DataFrames.

The router appends one JSON object per line to ``recording.path``: ``prediction`` records (one per
request, the primary's answer with each shadow's beside it), ``outcome`` records (one per outcome
accepted by ``POST /feedback``) and ``decision`` records (traffic decisions). Files rotate by
size: ``predictions.jsonl`` is the newest, ``predictions.jsonl.1`` the one before, and so on; under
``serve --workers N`` each worker writes ``predictions.wN.jsonl``.

Reading follows the router's own reader (``modelsplit report``): a base path includes its rotated
siblings, oldest first; blank lines are ignored; a line that is not a JSON object (a partial last
line left by a crash, corruption) is skipped and counted; a record with a newer ``schema`` than
this package knows, or without the fields its type needs, is counted as invalid and left out.
"""

from __future__ import annotations

import glob as _glob
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "Records",
    "SkippedLine",
    "SCHEMA_VERSION",
    "expand_paths",
    "iter_records",
    "read_records",
    "record_files",
    "as_prediction_record",
    "as_outcome_record",
]

#: The record format this package reads (``schema`` absent or at most this).
SCHEMA_VERSION = 1
#: The largest outcome value the router writes; an outcome record beyond it is invalid.
MAX_OUTCOME_VALUE = 1e15

PathsOrGlob = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_ROTATED = re.compile(r"^[1-9][0-9]*$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_ATTRIBUTIONS = frozenset(["model", "request_id", "user_id"])


@dataclass(frozen=True)
class SkippedLine:
    """A line that was not a record: ``path``, 1-based ``line``, and ``reason``
    (``"invalid_json"``: e.g. a partial last line; ``"not_object"``)."""

    path: str
    line: int
    reason: str


def record_files(path: Union[str, "os.PathLike[str]"]) -> list[str]:
    """``path`` and its rotated siblings that exist, oldest first (``path.5`` ... ``path.1``, ``path``):
    the order their records were written in. Only ``.1``, ``.2``, ... count (not ``.gz`` or ``.01``)."""
    base = os.fspath(path)
    directory = os.path.dirname(base) or "."
    prefix = os.path.basename(base) + "."
    found: list[tuple[int, str]] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        names = []
    for name in names:
        if name.startswith(prefix) and _ROTATED.match(name[len(prefix):]):
            found.append((int(name[len(prefix):]), os.path.join(os.path.dirname(base), name)))
    files = [p for _, p in sorted(found, reverse=True)]
    if os.path.isfile(base):
        files.append(base)
    return files


def expand_paths(paths_or_glob: PathsOrGlob) -> list[str]:
    """Every file to read, in order and once each: each path (or each match of a glob pattern,
    sorted) with its rotated siblings, oldest first. Raises FileNotFoundError for a path or pattern
    that names no file."""
    if isinstance(paths_or_glob, (str, os.PathLike)):
        items: Sequence[Union[str, os.PathLike[str]]] = [paths_or_glob]
    else:
        items = list(paths_or_glob)
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = os.fspath(item)
        bases = sorted(_glob.glob(text)) if _GLOB_CHARS.search(text) and not os.path.exists(text) else [text]
        files = [f for b in bases for f in record_files(b)]
        if not files:
            if os.path.isdir(text):
                raise IsADirectoryError(f"{text} is a directory; give the record file (or a glob such as {os.path.join(text, '*.jsonl')})")
            raise FileNotFoundError(f"no record file matches {text} (nor rotated siblings {text}.1, ...)")
        for f in files:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # the router's JSON.parse refuses NaN and Infinity


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def iter_records(
    paths_or_glob: PathsOrGlob,
    *,
    on_skip: Optional[Callable[[SkippedLine], None]] = None,
) -> Iterator[dict[str, Any]]:
    """Streams the records (parsed JSON objects) of the files, a line at a time, in order: memory
    stays small however large the files. Lines that are not JSON objects are passed to ``on_skip``."""
    for path in expand_paths(paths_or_glob):
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                text = raw.decode("utf-8", "replace")
                if text.strip() == "":
                    continue
                try:
                    value = _decoder.decode(text)
                except ValueError:
                    if on_skip is not None:
                        on_skip(SkippedLine(path, line_no, "invalid_json"))
                    continue
                if not isinstance(value, dict):
                    if on_skip is not None:
                        on_skip(SkippedLine(path, line_no, "not_object"))
                    continue
                yield value


def _is_readable_schema(record: dict[str, Any]) -> bool:
    if "schema" not in record:
        return True
    v = record["schema"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return float(v).is_integer() and 1 <= v <= SCHEMA_VERSION


def as_prediction_record(record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The record if it is a prediction this package reads (route and primary model present, a
    readable ``schema``), else None."""
    if record.get("type") != "prediction" or not _is_readable_schema(record):
        return None
    primary = record.get("primary")
    if not isinstance(record.get("route"), str) or not isinstance(primary, dict) or not isinstance(primary.get("model"), str):
        return None
    return record


def as_outcome_record(record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The record if it is a well-formed outcome (route, model and metric strings, a finite value
    within the router's bound, a known ``attributed_by``), else None."""
    if record.get("type") != "outcome" or not _is_readable_schema(record):
        return None
    if not all(isinstance(record.get(k), str) for k in ("route", "model", "metric")):
        return None
    v = record.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or abs(v) > MAX_OUTCOME_VALUE:
        return None
    if "attributed_by" in record and record["attributed_by"] not in _ATTRIBUTIONS:
        return None
    return record


PREDICTION_COLUMNS = ["ts", "request_id", "route", "user_id", "assignment", "model", "status", "latency_ms",
                      "prediction", "error", "prediction_error", "input_omitted", "schema"]
SHADOW_FIELDS = ["status", "latency_ms", "prediction", "error", "prediction_error", "agree", "abs_diff_max",
                 "abs_diff_mean", "fraction_agree", "comparison_error", "dropped", "model_version"]
OUTCOME_COLUMNS = ["ts", "route", "request_id", "user_id", "model", "metric", "value", "attributed_by", "schema",
                   "model_version", "counted", "bucket"]


def _prediction_row(r: dict[str, Any], include_input: bool) -> dict[str, Any]:
    p = r["primary"]
    row: dict[str, Any] = {
        "ts": r.get("ts"), "request_id": r.get("request_id"), "route": r["route"], "user_id": r.get("user_id"),
        "assignment": r.get("assignment"), "model": p["model"], "status": p.get("status"),
        "latency_ms": p.get("latency_ms"), "prediction": p.get("prediction"), "error": p.get("error"),
        "prediction_error": p.get("prediction_error"), "input_omitted": r.get("input_omitted"), "schema": r.get("schema"),
        "model_version": p.get("model_version"), "shares": r.get("shares"),
    }
    if include_input:
        row["input"] = r.get("input")
    shadows = r.get("shadows")
    for s in shadows if isinstance(shadows, list) else []:
        if not isinstance(s, dict) or not isinstance(s.get("model"), str):
            continue
        pre = f"shadow.{s['model']}."
        if "model_version" in s:
            row[pre + "model_version"] = s["model_version"]
        if "dropped" in s:
            row[pre + "dropped"] = s["dropped"]
            continue
        row[pre + "status"] = s.get("status")
        row[pre + "latency_ms"] = s.get("latency_ms")
        row[pre + "prediction"] = s.get("prediction")
        row[pre + "error"] = s.get("error")
        if "prediction_error" in s:
            row[pre + "prediction_error"] = s["prediction_error"]
        c = s.get("comparison")
        if isinstance(c, dict) and isinstance(c.get("agree"), bool):
            row[pre + "agree"] = c["agree"]
            row[pre + "abs_diff_max"] = c.get("abs_diff_max")
            row[pre + "abs_diff_mean"] = c.get("abs_diff_mean")
            row[pre + "fraction_agree"] = c.get("fraction_agree")
        else:
            row[pre + "comparison_error"] = c.get("error") if isinstance(c, dict) else "no comparison"
    return row


def _outcome_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"ts": r.get("ts"), "route": r["route"], "request_id": r.get("request_id"), "user_id": r.get("user_id"),
            "model": r["model"], "metric": r["metric"], "value": float(r["value"]),
            "attributed_by": r.get("attributed_by"), "schema": r.get("schema"),
            "model_version": r.get("model_version"), "counted": r.get("counted", True) is not False,
            "bucket": r.get("bucket") if isinstance(r.get("bucket"), int) and not isinstance(r.get("bucket"), bool) else None}


@dataclass
class Records:
    """What :func:`read_records` read.

    ``predictions``: one row per request: ``ts`` (UTC), ``request_id``, ``route``, ``user_id``,
    ``assignment``, the primary's ``model``, ``status``, ``latency_ms``, ``prediction``, ``error``,
    ``prediction_error``, ``input_omitted``, ``schema``, ``model_version`` (the MLflow registered
    version behind the model, where ``models.NAME.mlflow`` names one; missing otherwise) (and
    ``input`` with ``include_input=True``), ``shares`` (the split's shares in force when the request
    was assigned, ``{model: share}``, where the record has them),
    then per shadow model ``M`` the columns ``shadow.M.status``, ``.latency_ms``, ``.prediction``,
    ``.error``, ``.agree``, ``.abs_diff_max``, ``.abs_diff_mean``, ``.fraction_agree`` (a comparison
    made), ``.comparison_error`` (none could be made), ``.dropped`` (selected but not sent) and
    ``.model_version``;
    missing where the shadow did not run for that request.

    ``outcomes``: ``ts``, ``route``, ``request_id``, ``user_id``, ``model``, ``metric``, ``value``,
    ``attributed_by``, ``schema``, ``model_version`` (the MLflow version the outcome is for, where
    there is one), ``counted`` (False for an outcome of a request an earlier registered version
    answered, which the router counted in no experiment) and ``bucket`` (the bucket of its unit the
    router counted it in, where the record has one), in file order (the order the router applied
    them).

    ``decisions``: every field of each decision record.
    """

    predictions: "pd.DataFrame"
    outcomes: "pd.DataFrame"
    decisions: "pd.DataFrame"
    #: Files read, in order.
    files: list[str] = field(default_factory=list)
    #: Lines that were not JSON objects (e.g. a partial last line).
    skipped_lines: int = 0
    #: Records of a known type that could not be read (missing fields, newer schema).
    invalid: int = 0
    #: Records of other types.
    other: int = 0


class _Builder:
    def __init__(self, include_input: bool) -> None:
        self.include_input = include_input
        self.predictions: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.invalid = 0
        self.other = 0

    def add(self, r: dict[str, Any]) -> None:
        t = r.get("type")
        if t == "prediction":
            if as_prediction_record(r) is None:
                self.invalid += 1
            else:
                self.predictions.append(_prediction_row(r, self.include_input))
        elif t == "outcome":
            if as_outcome_record(r) is None:
                self.invalid += 1
            else:
                self.outcomes.append(_outcome_row(r))
        elif t == "decision":
            if not _is_readable_schema(r) or not isinstance(r.get("route"), str):
                self.invalid += 1
            else:
                self.decisions.append(r)
        else:
            self.other += 1

    def build(self, files: list[str], skipped: int) -> Records:
        import pandas as pd

        base = PREDICTION_COLUMNS + (["input"] if self.include_input else []) + ["model_version", "shares"]
        preds = pd.DataFrame.from_records(self.predictions) if self.predictions else pd.DataFrame(columns=base)
        shadow_cols = [c for c in preds.columns if c.startswith("shadow.")]
        models = sorted({c[len("shadow."):c.rindex(".")] for c in shadow_cols})
        order = base + [f"shadow.{m}.{f}" for m in models for f in SHADOW_FIELDS if f"shadow.{m}.{f}" in preds.columns]
        preds = preds.reindex(columns=order)
        _timestamps(preds)
        for c in preds.columns:
            if c == "status" or c.endswith(".status"):
                preds[c] = _nullable(preds[c], "Int64")
            elif c.endswith(".agree"):
                preds[c] = _nullable(preds[c], "boolean")
            elif c == "latency_ms" or c.endswith((".latency_ms", ".abs_diff_max", ".abs_diff_mean", ".fraction_agree")):
                preds[c] = pd.to_numeric(preds[c], errors="coerce").astype("float64")

        outcomes = pd.DataFrame.from_records(self.outcomes, columns=OUTCOME_COLUMNS) if self.outcomes else pd.DataFrame(columns=OUTCOME_COLUMNS)
        outcomes["value"] = outcomes["value"].astype("float64")
        outcomes["bucket"] = _nullable(outcomes["bucket"], "Int64")
        _timestamps(outcomes)
        decisions = pd.DataFrame.from_records(self.decisions) if self.decisions else pd.DataFrame(columns=["type", "schema", "ts", "route"])
        _timestamps(decisions)
        return Records(preds, outcomes, decisions, files=files, skipped_lines=skipped, invalid=self.invalid, other=self.other)


def _nullable(series: "pd.Series[Any]", dtype: str) -> "pd.Series[Any]":
    try:
        return series.astype(dtype)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return series  # unexpected values: leave the column as read


def _timestamps(frame: "pd.DataFrame") -> None:
    import pandas as pd

    if "ts" in frame.columns:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, errors="coerce", format="ISO8601")


def read_records(
    paths_or_glob: PathsOrGlob,
    *,
    include_input: bool = False,
    chunksize: Optional[int] = None,
    on_skip: Optional[Callable[[SkippedLine], None]] = None,
) -> Union[Records, Iterator[Records]]:
    """Reads record files into DataFrames (see :class:`Records`).

    ``paths_or_glob``: a record file (its rotated siblings ``.1``, ``.2``, ... are read too, oldest
    first), a glob pattern (``"data/predictions.w*.jsonl"``, matches sorted) or a list of either.
    ``include_input``: add the request bodies as an ``input`` column (they can be large).
    ``chunksize``: instead of one :class:`Records`, yield one per ``chunksize`` records read, so a
    file of any size is processed in bounded memory.

    >>> recs = read_records("data/predictions.jsonl")          # doctest: +SKIP
    >>> recs.predictions.groupby("model")["latency_ms"].median()  # doctest: +SKIP
    """
    files = expand_paths(paths_or_glob)
    if chunksize is not None:
        if chunksize < 1:
            raise ValueError("chunksize must be at least 1")
        return _chunks(files, include_input, chunksize, on_skip)
    skipped, skip = _skip_counter(on_skip)
    builder = _Builder(include_input)
    for r in iter_records(files, on_skip=skip):
        builder.add(r)
    return builder.build(files, skipped[0])


def _skip_counter(on_skip: Optional[Callable[[SkippedLine], None]]) -> tuple[list[int], Callable[[SkippedLine], None]]:
    """A count of skipped lines (a one-element list, read as it grows) and the callback that keeps it."""
    skipped = [0]

    def skip(info: SkippedLine) -> None:
        skipped[0] += 1
        if on_skip is not None:
            on_skip(info)

    return skipped, skip


def _chunks(files: list[str], include_input: bool, chunksize: int, on_skip: Optional[Callable[[SkippedLine], None]]) -> Iterator[Records]:
    skipped, skip = _skip_counter(on_skip)
    builder = _Builder(include_input)
    n = 0
    for r in iter_records(files, on_skip=skip):
        builder.add(r)
        n += 1
        if n == chunksize:
            yield builder.build(files, skipped[0])
            skipped[0] = 0
            builder = _Builder(include_input)
            n = 0
    if n > 0 or skipped[0] > 0:
        yield builder.build(files, skipped[0])

