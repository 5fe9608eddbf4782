"""Sending outcomes to the router's ``POST /feedback``.

:class:`Feedback` queues outcomes (bounded) and a background thread sends them in NDJSON
batches, retrying a batch the router answered 503 after its ``Retry-After``. :meth:`Feedback.post`
sends at once and returns the router's answer. Standard library only.
"""

from __future__ import annotations

import collections
import email.utils
import http.client
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

__all__ = [
    "Feedback",
    "FeedbackError",
    "FeedbackQueueFull",
    "FeedbackRejected",
    "FeedbackUnavailable",
    "MAX_OUTCOME_VALUE",
]

#: The largest outcome value the router accepts (its sums of squares stay finite).
MAX_OUTCOME_VALUE = 1e15

_OUTCOME_KEYS = frozenset(["route", "request_id", "user_id", "model", "metric", "value", "ts"])
_ITEM_AT = re.compile(r"^\[(\d+)\]")
# Node's default keep-alive timeout is 5 s: a connection idle longer may be closing under us.
_IDLE_RECONNECT_S = 4.0


class FeedbackError(Exception):
    """Outcomes that were not applied. ``outcomes`` lists them (as dicts) so they can be sent again."""

    def __init__(self, message: str, outcomes: Optional[list[dict[str, Any]]] = None) -> None:
        super().__init__(message)
        self.outcomes: list[dict[str, Any]] = outcomes or []


class FeedbackRejected(FeedbackError):
    """The router refused outcomes (400, 404, 413 or 422): sending them again would not help.

    ``problems`` holds the router's ``{"at", "message"}`` entries; ``status`` the HTTP status.
    """

    def __init__(self, message: str, outcomes: Optional[list[dict[str, Any]]] = None, *,
                 status: int = 0, problems: Optional[list[dict[str, Any]]] = None) -> None:
        super().__init__(message, outcomes)
        self.status = status
        self.problems: list[dict[str, Any]] = problems or []


class FeedbackUnavailable(FeedbackError):
    """The outcomes could not be delivered: 503 or no connection through every attempt, or the
    connection failed after the batch was sent (``maybe_applied``: the router may have applied it)."""

    def __init__(self, message: str, outcomes: Optional[list[dict[str, Any]]] = None, *, maybe_applied: bool = False) -> None:
        super().__init__(message, outcomes)
        self.maybe_applied = maybe_applied


class FeedbackQueueFull(FeedbackError):
    """:meth:`Feedback.send` found the queue full (``block=False``, or still full after ``timeout``)."""


def _check_outcome(o: Mapping[str, Any], default_route: Optional[str], route_scoped: bool) -> dict[str, Any]:
    """A copy of one outcome with the default route filled in, after the checks the router would
    make on its own (a batch is all or nothing there, so one bad outcome would sink the others)."""
    out = {k: v for k, v in o.items() if v is not None}
    unknown = [k for k in out if k not in _OUTCOME_KEYS]
    if unknown:
        raise ValueError(f"unknown outcome field {unknown[0]!r}; allowed: {', '.join(sorted(_OUTCOME_KEYS))}")
    if "route" not in out and default_route is not None and not route_scoped:
        out["route"] = default_route
    if "route" not in out and not route_scoped:
        raise ValueError("an outcome needs a route: give route= to Feedback() or to the outcome")
    for k in ("route", "request_id", "model", "metric"):
        if k in out and (not isinstance(out[k], str) or out[k] == ""):
            raise ValueError(f"outcome {k} must be a non-empty string, got {out[k]!r}")
    if "metric" not in out:
        raise ValueError("an outcome needs a metric")
    uid = out.get("user_id")
    if uid is not None and not ((isinstance(uid, str) and uid != "") or (isinstance(uid, int) and not isinstance(uid, bool))):
        raise ValueError(f"outcome user_id must be a non-empty string or an int, got {uid!r}")
    if not any(k in out for k in ("model", "request_id", "user_id")):
        raise ValueError("an outcome needs model, request_id or user_id to be attributed to a model")
    v = out.get("value")
    if isinstance(v, bool):
        pass
    elif isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0 or v > MAX_OUTCOME_VALUE:
            raise ValueError(f"outcome value must be a finite number from 0 to {MAX_OUTCOME_VALUE:g}, got {v!r}")
    else:
        raise ValueError(f"outcome value must be a number or a boolean, got {v!r}")
    ts = out.get("ts")
    if ts is not None and not isinstance(ts, (str, int, float)):
        raise ValueError(f"outcome ts must be a string or a number, got {ts!r}")
    return out


def _encode(outcome: Mapping[str, Any]) -> bytes:
    return json.dumps(outcome, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class _Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8", "replace"))
        except ValueError:
            return None


class Feedback:
    """A client for the router's ``POST /feedback``.

    ``url`` is the router's prediction address (``http://127.0.0.1:8080``; ``/feedback`` is
    added), or a route's own feedback URL (``http://host:8080/models/churn/feedback``, where the
    route comes from the path). ``route`` is used for outcomes that do not name one.

    Two ways to send:

    * :meth:`send` / :meth:`send_many` queue outcomes (at most ``max_queue``); a background
      thread sends them as NDJSON batches of up to ``batch_size`` outcomes (and ``max_batch_bytes``),
      waiting up to ``linger`` seconds for a batch to fill. :meth:`flush` waits until everything
      queued has been answered and raises :class:`FeedbackError` for what was not applied.
    * :meth:`post` sends one outcome (a JSON object) or a list (NDJSON) now and returns the
      router's answer, ``{"accepted": n, "attributed_by": {...}, "outcomes": [...]}``.

    A batch the router answers 503 (its record file could not take it; nothing was applied) is
    sent again after ``Retry-After`` (at most ``max_retry_wait`` s), up to ``max_attempts`` times
    in all; so is one that found no connection. When the router refuses some outcomes of a batch
    (400/404/422 naming them), those are set aside (raised by :meth:`flush` as
    :class:`FeedbackRejected`) and the rest are sent again.

    >>> with Feedback("http://127.0.0.1:8080", route="churn") as fb:   # doctest: +SKIP
    ...     fb.send("converted", 1, request_id=rid)
    ...     fb.send("revenue", 12.5, user_id="alice")
    """

    def __init__(
        self,
        url: str,
        route: Optional[str] = None,
        *,
        batch_size: int = 1000,
        max_batch_bytes: int = 1 << 20,
        max_queue: int = 100_000,
        linger: float = 0.2,
        timeout: float = 30.0,
        max_attempts: int = 8,
        max_retry_wait: float = 60.0,
        headers: Optional[Mapping[str, str]] = None,
        on_error: Optional[Callable[[FeedbackError], None]] = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be an http(s) URL such as http://127.0.0.1:8080, got {url!r}")
        if batch_size < 1 or max_queue < 1 or max_attempts < 1:
            raise ValueError("batch_size, max_queue and max_attempts must be at least 1")
        path = parsed.path.rstrip("/")
        self._route_scoped = path.endswith("/feedback") and path != "/feedback"
        self._path = (path if path.endswith("/feedback") else path + "/feedback") + (f"?{parsed.query}" if parsed.query else "")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self.url = f"{parsed.scheme}://{parsed.netloc}{self._path}"
        self.route = route
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.max_queue = max_queue
        self.linger = linger
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._headers = dict(headers or {})
        self._on_error = on_error

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[dict[str, Any], bytes]] = collections.deque()
        self._in_flight = 0
        self._flush_requests = 0
        self._errors: list[FeedbackError] = []
        self._closed = False
        self._worker: Optional[threading.Thread] = None
        self._conn: Optional[http.client.HTTPConnection] = None
        self._conn_used_at = 0.0
        self._conn_lock = threading.Lock()
        #: Outcomes the router acknowledged.
        self.accepted = 0
        #: Requests sent again after a 503 or a refused connection.
        self.retries = 0

    # ---- queueing ---------------------------------------------------------------------------

    def send(
        self,
        metric: str,
        value: Union[float, int, bool],
        *,
        request_id: Optional[str] = None,
        user_id: Optional[Union[str, int]] = None,
        model: Optional[str] = None,
        route: Optional[str] = None,
        ts: Optional[Union[str, float]] = None,
        block: bool = True,
        timeout: Optional[float] = None,
    ) -> None:
        """Queues one outcome. Give at least one of ``model`` (from the prediction's
        ``x-modelsplit-model``), ``request_id`` (its ``x-request-id``) or ``user_id``.
        When the queue is full, waits for room (``block``, up to ``timeout`` s) or raises
        :class:`FeedbackQueueFull`. Raises ValueError for an outcome the router would refuse."""
        self.send_many([{"route": route, "request_id": request_id, "user_id": user_id, "model": model,
                         "metric": metric, "value": value, "ts": ts}], block=block, timeout=timeout)

    def send_many(self, outcomes: Iterable[Mapping[str, Any]], *, block: bool = True, timeout: Optional[float] = None) -> None:
        """Queues outcomes given as dicts with the router's field names (``route``, ``metric``,
        ``value``, ``request_id``, ``user_id``, ``model``, ``ts``). Every outcome is checked before
        any is queued."""
        items = [(o, _encode(o)) for o in (_check_outcome(x, self.route, self._route_scoped) for x in outcomes)]
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            if self._closed:
                raise FeedbackError("this Feedback is closed", [o for o, _ in items])
            for n, item in enumerate(items):
                while len(self._queue) >= self.max_queue:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if not block or (remaining is not None and remaining <= 0):
                        raise FeedbackQueueFull(f"the queue holds {self.max_queue} outcomes; {len(items) - n} not queued",
                                                [o for o, _ in items[n:]])
                    self._ensure_worker()
                    self._changed.notify_all()
                    self._changed.wait(remaining)
                self._queue.append(item)
            self._ensure_worker()
            self._changed.notify_all()

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued and waits for the router's answers (up to ``timeout`` s, then
        TimeoutError). Raises the first :class:`FeedbackError` since the last flush, if any, with
        every outcome not applied in its ``outcomes``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._flush_requests += 1
            self._changed.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"flush: {len(self._queue) + self._in_flight} outcome(s) still unanswered after {timeout} s")
                    self._changed.wait(remaining)
            finally:
                self._flush_requests -= 1
            errors, self._errors = self._errors, []
        if errors:
            first = errors[0]
            if len(errors) > 1:
                for e in errors[1:]:
                    first.outcomes.extend(e.outcomes)
                first.args = (f"{first.args[0]} (and {len(errors) - 1} more failed batch(es); all their outcomes are in .outcomes)",)
            raise first

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes (see :meth:`flush`) and stops the sending thread. Further sends raise."""
        try:
            self.flush(timeout)
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            if self._worker is not None:
                self._worker.join(timeout=5)
            with self._conn_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def __enter__(self) -> "Feedback":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            # Already failing: deliver what can be delivered, but do not mask the original error.
            try:
                self.close()
            except FeedbackError:
                pass

    @property
    def pending(self) -> int:
        """Outcomes queued or being sent."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="modelsplit-feedback", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue and self._closed:
                    return
                # Linger for a fuller batch unless someone is waiting for it.
                until = time.monotonic() + self.linger
                while (len(self._queue) < self.batch_size and not self._flush_requests and not self._closed
                       and len(self._queue) < self.max_queue):
                    remaining = until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                batch: list[tuple[dict[str, Any], bytes]] = []
                size = 0
                while self._queue and len(batch) < self.batch_size:
                    o, line = self._queue[0]
                    if batch and size + len(line) + 1 > self.max_batch_bytes:
                        break
                    self._queue.popleft()
                    batch.append((o, line))
                    size += len(line) + 1
                self._in_flight = len(batch)
                self._changed.notify_all()  # room in the queue
            error: Optional[FeedbackError] = None
            try:
                self._deliver(batch)
            except FeedbackError as e:
                error = e
            except Exception as e:  # noqa: BLE001 - a sending thread must not die silently
                error = FeedbackUnavailable(f"feedback batch not sent: {e!r}", [o for o, _ in batch], maybe_applied=True)
            with self._changed:
                self._in_flight = 0
                if error is not None:
                    self._errors.append(error)
                self._changed.notify_all()
            if error is not None and self._on_error is not None:
                try:
                    self._on_error(error)
                except Exception:  # noqa: BLE001
                    pass

    def _deliver(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        """Sends a batch; drops outcomes the router names as refused and sends the rest again."""
        refused: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        status = 0
        while batch:
            answer = self._post_with_retries(b"\n".join(line for _, line in batch) + b"\n", "application/x-ndjson", [o for o, _ in batch])
            if answer.status == 200:
                body = answer.json()
                n = body.get("accepted", len(batch)) if isinstance(body, dict) else len(batch)
                with self._lock:
                    self.accepted += int(n)
                break
            body = answer.json()
            listed = body.get("problems") if isinstance(body, dict) else None
            status = answer.status
            bad: set[int] = set()
            if isinstance(listed, list) and len(batch) > 1:
                for p in listed:
                    m = _ITEM_AT.match(str(p.get("at", ""))) if isinstance(p, dict) else None
                    if m is None:
                        bad = set()
                        break
                    bad.add(int(m.group(1)))
            if not bad or any(i >= len(batch) for i in bad):
                # The whole batch is refused (or the answer does not say which outcomes).
                msg = body.get("message") if isinstance(body, dict) else answer.body[:500].decode("utf-8", "replace")
                raise FeedbackRejected(f"feedback refused with {status}: {msg}", refused + [o for o, _ in batch],
                                       status=status, problems=problems + (listed if isinstance(listed, list) else []))
            for p in listed or []:
                i = int(_ITEM_AT.match(str(p["at"])).group(1))  # type: ignore[union-attr]
                problems.append({"at": p.get("at"), "message": p.get("message"), "outcome": batch[i][0]})
            refused.extend(batch[i][0] for i in sorted(bad))
            batch = [item for i, item in enumerate(batch) if i not in bad]
        if refused:
            shown = "; ".join(f"{p['message']}" for p in problems[:5])
            raise FeedbackRejected(f"feedback refused {len(refused)} outcome(s) with {status}: {shown}", refused,
                                   status=status, problems=problems)

    # ---- sending now ------------------------------------------------------------------------

    def post(self, outcomes: Union[Mapping[str, Any], Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
        """Sends one outcome (as a JSON object) or several (as NDJSON) now, retrying 503s as
        described above, and returns the router's answer. Raises :class:`FeedbackRejected` when
        the router refuses the batch (nothing of it is applied then) and
        :class:`FeedbackUnavailable` when it could not be delivered."""
        if isinstance(outcomes, Mapping):
            one = _check_outcome(outcomes, self.route, self._route_scoped)
            body, ctype, items = _encode(one), "application/json", [one]
        else:
            items = [_check_outcome(o, self.route, self._route_scoped) for o in outcomes]
            if not items:
                raise ValueError("post: no outcomes")
            body, ctype = b"\n".join(_encode(o) for o in items) + b"\n", "application/x-ndjson"
        answer = self._post_with_retries(body, ctype, items)
        parsed = answer.json()
        if answer.status == 200 and isinstance(parsed, dict):
            with self._lock:
                self.accepted += int(parsed.get("accepted", len(items)))
            return parsed
        msg = parsed.get("message") if isinstance(parsed, dict) else answer.body[:500].decode("utf-8", "replace")
        problems = parsed.get("problems") if isinstance(parsed, dict) and isinstance(parsed.get("problems"), list) else []
        raise FeedbackRejected(f"feedback refused with {answer.status}: {msg}", items, status=answer.status, problems=problems)

    def _post_with_retries(self, body: bytes, content_type: str, items: list[dict[str, Any]]) -> _Answer:
        backoff = 0.1
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                answer = self._request(body, content_type)
            except ConnectionRefusedError as e:
                last = f"connection refused ({e})"
                wait = backoff
            except _SentAndLost as e:
                raise FeedbackUnavailable(f"feedback batch of {len(items)} outcome(s) sent, but no answer came ({e.cause!r}): "
                                          "it may or may not have been applied", items, maybe_applied=True) from e.cause
            except OSError as e:  # could not connect (DNS, unreachable): nothing was sent
                last = f"cannot connect ({e!r})"
                wait = backoff
            else:
                if answer.status != 503:
                    return answer
                last = f"503 {answer.body[:200].decode('utf-8', 'replace')}"
                after = _retry_after_seconds(answer.headers.get("retry-after"))
                wait = backoff if after is None else after
            if attempt == self.max_attempts:
                break
            with self._lock:
                self.retries += 1
            time.sleep(min(max(wait, 0.0), self.max_retry_wait))
            backoff = min(backoff * 2, 10.0)
        raise FeedbackUnavailable(f"feedback batch of {len(items)} outcome(s) not applied after {self.max_attempts} attempt(s): {last}", items)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The keep-alive connection, or a new one; and whether it is a reused one."""
        now = time.monotonic()
        if self._conn is not None and now - self._conn_used_at > _IDLE_RECONNECT_S:
            self._conn.close()
            self._conn = None
        if self._conn is not None:
            return self._conn, True
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        conn.connect()  # raises ConnectionRefusedError etc. before anything is sent
        self._conn = conn
        return conn, False

    def _request(self, body: bytes, content_type: str) -> _Answer:
        with self._conn_lock:
            for _ in range(2):
                conn, reused = self._connection()
                try:
                    conn.request("POST", self._path, body=body, headers={"content-type": content_type, **self._headers})
                    response = conn.getresponse()
                    data = response.read()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    conn.close()
                    self._conn = None
                    if reused:
                        continue  # the server closed an idle keep-alive connection: send on a new one
                    raise _SentAndLost(e) from e
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    self._conn = None
                    raise _SentAndLost(e) from e
                self._conn_used_at = time.monotonic()
                if response.will_close:
                    conn.close()
                    self._conn = None
                return _Answer(response.status, response.headers, data)
        raise _SentAndLost(ConnectionResetError("connection closed twice"))  # pragma: no cover


class _SentAndLost(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
