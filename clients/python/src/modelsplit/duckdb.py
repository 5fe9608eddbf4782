"""The experiment computed by DuckDB over record files, finished by the router's own analysis.

:func:`experiment_summary` returns what :func:`modelsplit.experiment_summary` returns for the same
files (``modelsplit report --config CONFIG FILES --json``'s ``experiments``), but the records are
reduced by DuckDB, in parallel and out of core, instead of replayed through one Node.js process:

1. ``modelsplit report --config CONFIG --sql duckdb`` prints the reduction (one SQL query, the
   router's; see the README's "At scale" section);
2. DuckDB runs it over the files' lines (``ms_lines``), with ``ms_unit_hash`` (murmur3 of
   ``"modelsplit-unit:" + id``, as the router hashes a unit);
3. its rows (per route, arm, metric, bucket, weight period and look: a few thousand, whatever the
   records) go to ``modelsplit report --config CONFIG --totals -``, which rebuilds the router's
   accumulators from them and prints the analysis. Every statistic is the router's.

Needs the ``duckdb`` package (``pip install modelsplit[duckdb]``); ``mmh3`` makes the unit hash fast.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

from ._hash import murmur3_32, utf8
from .experiments import ConfigLike, ReportError, RouterCommand, RouterNotFoundError, _config_path, router_command
from .records import PathsOrGlob, expand_paths

__all__ = ["experiment_summary", "reduce", "reduction_sql", "summary_from_totals", "unit_hash", "connect", "assignments", "ASSIGNMENTS_SQL"]

_PREFIX = b"modelsplit-unit:"


def unit_hash(unit: str) -> int:
    """murmur3_x86_32("modelsplit-unit:" + unit, seed 0), unsigned: the router's unit hash."""
    return murmur3_32(_PREFIX + utf8(unit), 0)


def _run(command: list[str], args: list[str], stdin: Optional[str] = None) -> str:
    full = [*command, *args]
    try:
        done = subprocess.run(full, capture_output=True, text=True, encoding="utf-8", input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise RouterNotFoundError(f"cannot run {command[0]!r}: {err}") from err
    if done.returncode != 0:
        raise ReportError(f"`{shlex.join(full[:len(command) + 5])}` exited with {done.returncode}: "
                          f"{done.stderr.strip() or done.stdout.strip()}", done.returncode, done.stderr)
    return done.stdout


def reduction_sql(config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None) -> str:
    """The reduction of ``config``'s experiments in DuckDB's SQL, as the router writes it."""
    command = router_command(modelsplit_bin)
    with tempfile.TemporaryDirectory(prefix="modelsplit-") as tmp:
        return _run(command, ["report", "--config", _config_path(config, Path(tmp)), "--sql", "duckdb"])


def connect(database: str = ":memory:", *, memory_limit: Optional[str] = None,
            temp_directory: Optional[str] = None) -> Any:
    """A DuckDB connection with ``ms_unit_hash(VARCHAR) -> BIGINT`` registered.

    ``memory_limit`` (DuckDB's setting, e.g. ``"4GB"``; default DuckDB's, 80 % of the machine's memory)
    caps what the reduction holds in memory: past it, its sorts, windows and joins spill to
    ``temp_directory`` (default DuckDB's: ``<database>.tmp``, or ``.tmp`` in the working directory for an
    in-memory database). A reduction over tens of millions of records needs one of the two on a machine
    whose memory is shared (README, At scale)."""
    import duckdb

    config: dict[str, Any] = {}
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if temp_directory is not None:
        config["temp_directory"] = temp_directory
    con = duckdb.connect(database, config=config)
    con.create_function("ms_unit_hash", unit_hash, ["VARCHAR"], "BIGINT", side_effects=False)
    return con


def _lines_view(con: Any, paths: list[str]) -> None:
    """``ms_lines(line, ord, event_id)`` over JSONL files: each line as text (so a line DuckDB could
    not type, or with fields nobody declared, never fails the scan), numbered in file order (the
    order the report replays them in); ``event_id`` a line's ``ce_id`` when it has one (a topic
    exported with its CloudEvents id), by which a duplicate is counted once."""
    files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
    # One reader thread keeps the lines in file order for row_number(); the reduction after it is parallel.
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW ms_raw AS
        SELECT line, row_number() OVER () AS ord FROM read_csv({files}, columns = {{'line': 'VARCHAR'}},
            delim = '\\x1e', quote = '', escape = '', header = false, parallel = false, strict_mode = false,
            auto_detect = false, null_padding = false, max_line_size = 67108864)""")
    con.execute("""
        CREATE OR REPLACE TEMP VIEW ms_lines AS
        SELECT line, ord, CASE WHEN json_valid(line) THEN json_extract_string(line, '$.ce_id') END AS event_id FROM ms_raw""")


def reduce(records: PathsOrGlob, config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None,
           con: Any = None) -> list[dict[str, Any]]:
    """The reduction's rows over ``records`` (the input of ``modelsplit report --totals``), as dicts
    without their null columns. ``con``: a connection of :func:`connect` (its memory limit, say)."""
    paths = [str(p) for p in expand_paths(records)]
    sql = reduction_sql(config, modelsplit_bin=modelsplit_bin)
    con = con if con is not None else connect()
    _lines_view(con, paths)
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    rows = []
    for values in cur.fetchall():
        row = {}
        for k, v in zip(names, values):
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                continue
            row[k] = int(v) if isinstance(v, int) else v
        rows.append(row)
    return rows


def experiment_summary(records: PathsOrGlob, config: ConfigLike, *,
                       modelsplit_bin: Optional[RouterCommand] = None, memory_limit: Optional[str] = None,
                       temp_directory: Optional[str] = None) -> list[dict[str, Any]]:
    """The A/B statistics of every route of ``config`` that declares metrics, over the record files
    ``records`` (paths or a glob; rotated siblings included), reduced by DuckDB: the same list as
    :func:`modelsplit.experiment_summary` returns for the same files. ``memory_limit`` and
    ``temp_directory``: as for :func:`connect` (spill past the limit instead of growing with the records)."""
    con = connect(memory_limit=memory_limit, temp_directory=temp_directory)
    try:
        rows = reduce(records, config, modelsplit_bin=modelsplit_bin, con=con)
    finally:
        con.close()
    return summary_from_totals(rows, config, modelsplit_bin=modelsplit_bin)


def summary_from_totals(rows: list[dict[str, Any]], config: ConfigLike, *,
                        modelsplit_bin: Optional[RouterCommand] = None) -> list[dict[str, Any]]:
    """The router's analysis (``modelsplit report --totals -``) of the reduction's rows, from any engine."""
    command = router_command(modelsplit_bin)
    text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in rows)
    with tempfile.TemporaryDirectory(prefix="modelsplit-") as tmp:
        out = _run(command, ["report", "--config", _config_path(config, Path(tmp)), "--totals", "-", "--json"], stdin=text)
    doc = json.loads(out)
    return doc["experiments"]



#: The assignment table over ``ms_lines`` (README, At scale): one row per unit and route at the
#: unit's first exposure (the first prediction assigned by hash, in the order the lines were written).
ASSIGNMENTS_SQL = """
SELECT unit_id, min(ts) AS first_exposure, route AS experiment_id, route,
       arg_min(arm, ord) AS arm, arg_min(model_version, ord) AS model_version
FROM (
  SELECT ord, j->>'$.user_id' AS unit_id, j->>'$.ts' AS ts, j->>'$.route' AS route,
         j->>'$.primary.model' AS arm, j->>'$.primary.model_version' AS model_version
  FROM (SELECT ord, CASE WHEN json_valid(line) THEN CAST(line AS JSON) END AS j FROM ms_lines)
  WHERE j->>'$.type' = 'prediction' AND j->>'$.assignment' = 'hash' AND json_type(j, '$.user_id') = 'VARCHAR')
GROUP BY unit_id, route
ORDER BY experiment_id, unit_id
"""


def assignments(records: PathsOrGlob, *, con: Any = None) -> Any:
    """The assignment table over record files as a pandas DataFrame: ``unit_id``, ``first_exposure``
    (the record's ``ts``), ``experiment_id`` (the route), ``route``, ``arm`` (the model),
    ``model_version``; the columns GrowthBook, Statsig and Eppo read (README, At scale)."""
    con = con if con is not None else connect()
    _lines_view(con, [str(p) for p in expand_paths(records)])
    return con.execute(ASSIGNMENTS_SQL).df()
