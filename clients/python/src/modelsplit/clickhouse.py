"""The experiment computed by ClickHouse, finished by the router's own analysis.

The same three steps as :mod:`modelsplit.duckdb` (the router's reduction, ``modelsplit report
--config CONFIG --sql clickhouse``; run by the engine; its rows to ``modelsplit report --totals``),
with the ClickHouse engine: embedded (``chdb`` from PyPI, the current engine in-process) over record
files, or a server's HTTP interface over the tables of ``deploy/clickhouse/schema.sql`` (its
``modelsplit.ms_lines`` view), for which ``modelsplit report --clickhouse URL`` needs no Python.

Needs the ``chdb`` package for files (``pip install "modelsplit[clickhouse]"``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from .duckdb import _run, summary_from_totals
from .experiments import ConfigLike, RouterCommand, _config_path, router_command
from .records import PathsOrGlob, expand_paths

__all__ = ["experiment_summary", "reduce", "reduction_sql", "load_files"]

_DATABASE = "modelsplit"

#: The table `load_files` fills and the view the reduction reads (as deploy/clickhouse/schema.sql's).
_LINES = f"""
CREATE TABLE IF NOT EXISTS {_DATABASE}.file_lines (line String, ord UInt64, event_id Nullable(String)) ENGINE = MergeTree ORDER BY ord;
CREATE VIEW IF NOT EXISTS {_DATABASE}.ms_lines AS SELECT line, ord, event_id FROM {_DATABASE}.file_lines
"""


def reduction_sql(config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None) -> str:
    """The reduction of ``config``'s experiments in ClickHouse's SQL, as the router writes it."""
    command = router_command(modelsplit_bin)
    with tempfile.TemporaryDirectory(prefix="modelsplit-") as tmp:
        return _run(command, ["report", "--config", _config_path(config, Path(tmp)), "--sql", "clickhouse"])


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_files(session: Any, records: PathsOrGlob) -> int:
    """Loads JSONL record files into ``modelsplit.file_lines`` of a chdb session, each line as text
    numbered in file order (``ord``; the order the report replays them in), with its ``ce_id`` as
    ``event_id`` when it has one. Returns the lines loaded."""
    for statement in ("CREATE DATABASE IF NOT EXISTS " + _DATABASE, *_LINES.strip().split(";\n")):
        session.query(statement)
    session.query(f"TRUNCATE TABLE {_DATABASE}.file_lines")
    offset = 0
    for path in expand_paths(records):
        # One thread reads a file in order, so rowNumberInAllBlocks() is its line number.
        session.query(f"""
            INSERT INTO {_DATABASE}.file_lines
            SELECT line, {offset} + rowNumberInAllBlocks() + 1,
              if(isValidJSON(line) AND JSONType(line, 'ce_id') = 'String', JSONExtractString(line, 'ce_id'), NULL)
            FROM file({_literal(str(Path(path).resolve()))}, 'LineAsString', 'line String')
            SETTINGS max_threads = 1, input_format_parallel_parsing = 0""")
        offset = int(str(session.query(f"SELECT max(ord) FROM {_DATABASE}.file_lines", "CSV")).strip() or 0)
    return offset


def reduce(records: PathsOrGlob, config: ConfigLike, *, modelsplit_bin: Optional[RouterCommand] = None,
           session: Any = None) -> list[dict[str, Any]]:
    """The reduction's rows over the record files, computed by chdb (the ClickHouse engine, in-process)."""
    from chdb import session as chs

    sql = reduction_sql(config, modelsplit_bin=modelsplit_bin)
    own = session is None
    s = chs.Session() if own else session
    try:
        load_files(s, records)
        s.query(f"USE {_DATABASE}")
        text = str(s.query(sql, "JSONEachRow"))
    finally:
        if own:
            s.close()
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append({k: v for k, v in json.loads(line).items() if v is not None})
    return rows


def experiment_summary(records: PathsOrGlob, config: ConfigLike, *,
                       modelsplit_bin: Optional[RouterCommand] = None) -> list[dict[str, Any]]:
    """The A/B statistics of every route of ``config`` with metrics over the record files, reduced
    by the ClickHouse engine (chdb): the same list as :func:`modelsplit.experiment_summary`."""
    return summary_from_totals(reduce(records, config, modelsplit_bin=modelsplit_bin), config, modelsplit_bin=modelsplit_bin)
