"""modelsplit: the router's own rules, for the people who analyse its experiments.

* :func:`assign` -- which model a user id goes to (``hash="rendezvous"`` or ``"nginx"``), exactly
  as the router decides it; :class:`Assigner` for many ids.
* :class:`Feedback` -- send outcomes to ``POST /feedback``, one by one or in NDJSON batches, with
  retries on 503 after ``Retry-After``, a bounded queue and :meth:`Feedback.flush`.
* :func:`read_records` -- the router's JSONL record files as pandas DataFrames (predictions with a
  column group per shadow model, outcomes, decisions); :func:`iter_records` to stream them.
* :func:`experiment_summary` -- the A/B statistics ``modelsplit report --config`` prints, read
  from the router's own report (its one owner), so every number is the router's.
"""

from .assign import Assigner, assign, explain, nginx_percents
from .experiments import (
    ReportError,
    RouterNotFoundError,
    experiment_summary,
    load_config,
    router_command,
    routes_with_metrics,
    summary_frame,
)
from .feedback import (
    Feedback,
    FeedbackError,
    FeedbackQueueFull,
    FeedbackRejected,
    FeedbackUnavailable,
)
from .records import Records, SkippedLine, expand_paths, iter_records, read_records, record_files

__version__ = "0.1.0"

__all__ = [
    "Assigner",
    "Feedback",
    "FeedbackError",
    "FeedbackQueueFull",
    "FeedbackRejected",
    "FeedbackUnavailable",
    "Records",
    "ReportError",
    "RouterNotFoundError",
    "SkippedLine",
    "assign",
    "expand_paths",
    "experiment_summary",
    "explain",
    "iter_records",
    "load_config",
    "nginx_percents",
    "read_records",
    "record_files",
    "router_command",
    "routes_with_metrics",
    "summary_frame",
]
