"""modelsplit.Feedback against a fake server that answers what a test scripts (503s with
Retry-After, refusals, slowness, nothing at all) and against a real router."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

import pytest

from modelsplit import Feedback, FeedbackQueueFull, FeedbackRejected, FeedbackUnavailable, assign
from modelsplit.feedback import _retry_after_seconds
from support import Client

Answer = tuple[int, dict[str, str], Any]


class FakeRouter:
    """Records each POST (time, path, headers, body) and answers with `script(request_number, body)`."""

    def __init__(self, script: Callable[[int, bytes], Answer], port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.release.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                n = len(fake.requests)
                fake.requests.append({"at": time.monotonic(), "path": self.path, "headers": dict(self.headers), "body": body})
                fake.release.wait(10)
                status, headers, payload = script(n, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"content-type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def lines(self, i: int) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.requests[i]["body"].decode().splitlines() if x.strip()]


def accepted(_: int, body: bytes) -> Answer:
    n = sum(1 for line in body.splitlines() if line.strip())
    return 200, {}, {"accepted": n, "attributed_by": {"model": n, "request_id": 0, "user_id": 0}, "outcomes": []}


def unavailable(retry_after: str = "1") -> Answer:
    return 503, {"retry-after": retry_after}, {"statusCode": 503, "code": "MS_FEEDBACK_UNAVAILABLE", "message": "buffer full"}


@pytest.fixture
def fake():
    made: list[FakeRouter] = []

    def make(script: Callable[[int, bytes], Answer], port: int = 0) -> FakeRouter:
        f = FakeRouter(script, port)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def test_post_waits_retry_after_on_503_then_succeeds(fake) -> None:
    server = fake(lambda n, body: unavailable("1") if n == 0 else accepted(n, body))
    fb = Feedback(server.url, route="churn")
    answer = fb.post({"metric": "converted", "value": 1, "model": "churn-v2"})
    assert answer["accepted"] == 1
    assert len(server.requests) == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95
    assert server.requests[0]["body"] == server.requests[1]["body"]
    assert server.requests[0]["path"] == "/feedback"
    assert server.requests[0]["headers"]["content-type"] == "application/json"
    assert json.loads(server.requests[0]["body"]) == {"route": "churn", "metric": "converted", "value": 1, "model": "churn-v2"}
    assert fb.retries == 1 and fb.accepted == 1
    fb.close()


def test_queued_outcomes_go_in_ndjson_batches_and_flush_does_not_wait_for_linger(fake) -> None:
    server = fake(lambda n, body: unavailable("1") if n == 1 else accepted(n, body))
    with Feedback(server.url, route="churn", batch_size=100, linger=30) as fb:
        for i in range(250):
            fb.send("revenue", i * 0.5, user_id=f"user-{i}")
        t0 = time.monotonic()
        fb.flush(timeout=20)
        assert time.monotonic() - t0 < 5
        assert fb.accepted == 250 and fb.pending == 0
    sizes = [len(server.lines(i)) for i in range(len(server.requests))]
    assert sizes == [100, 100, 100, 50]  # the second batch was answered 503 and sent again
    assert server.requests[1]["body"] == server.requests[2]["body"]
    assert server.requests[0]["headers"]["content-type"] == "application/x-ndjson"
    sent = [o for i in (0, 2, 3) for o in server.lines(i)]
    assert sent == [{"route": "churn", "user_id": f"user-{i}", "metric": "revenue", "value": i * 0.5} for i in range(250)]


def test_gives_up_after_max_attempts_and_hands_back_the_outcomes(fake) -> None:
    server = fake(lambda n, body: unavailable("0"))
    fb = Feedback(server.url, route="churn", max_attempts=3)
    with pytest.raises(FeedbackUnavailable, match="after 3 attempt") as err:
        fb.post([{"metric": "converted", "value": True, "request_id": "r1"}, {"metric": "converted", "value": 0, "request_id": "r2"}])
    assert [o["request_id"] for o in err.value.outcomes] == ["r1", "r2"]
    assert len(server.requests) == 3
    fb.send("converted", 1, request_id="r3")
    with pytest.raises(FeedbackUnavailable) as err2:
        fb.flush(timeout=10)
    assert [o["request_id"] for o in err2.value.outcomes] == ["r3"]
    fb.flush()  # errors are reported once
    fb.close()


def test_retry_after_forms() -> None:
    assert _retry_after_seconds("2") == 2.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    when = _retry_after_seconds(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert when is not None and 28 <= when <= 31
    assert _retry_after_seconds(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_the_queue_is_bounded(fake) -> None:
    server = fake(accepted)
    server.release.clear()  # the router holds the first batch
    fb = Feedback(server.url, route="churn", max_queue=5, batch_size=5, linger=0)
    fb.send("converted", 1, model="a")
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.requests) == 1  # that one is in flight, the queue is empty again
    for i in range(5):
        fb.send("converted", 0, model="b", block=False)
    with pytest.raises(FeedbackQueueFull) as err:
        fb.send("converted", 1, model="c", block=False)
    assert err.value.outcomes[0]["model"] == "c"
    t0 = time.monotonic()
    with pytest.raises(FeedbackQueueFull):
        fb.send("converted", 1, model="c", timeout=0.3)
    assert time.monotonic() - t0 >= 0.25
    assert fb.pending == 6
    server.release.set()
    fb.close(timeout=10)
    assert fb.accepted == 6
    assert [len(server.lines(i)) for i in range(len(server.requests))] == [1, 5]


def test_a_router_not_yet_listening_is_waited_for(fake) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers: list[Any] = []
    timer = threading.Timer(0.5, lambda: servers.append(fake(accepted, port)))
    timer.start()
    fb = Feedback(f"http://127.0.0.1:{port}", route="churn", max_attempts=8)
    assert fb.post({"metric": "converted", "value": 1, "model": "a"})["accepted"] == 1
    assert fb.retries >= 1
    timer.join()
    fb.close()


def test_outcomes_the_router_would_refuse_are_refused_before_queueing() -> None:
    fb = Feedback("http://127.0.0.1:9", route="churn")
    with pytest.raises(ValueError, match="attributed"):
        fb.send("converted", 1)
    with pytest.raises(ValueError, match="finite"):
        fb.send("revenue", float("nan"), model="a")
    with pytest.raises(ValueError, match="finite"):
        fb.send("revenue", -1, model="a")
    with pytest.raises(ValueError, match="number"):
        fb.send("revenue", "3", model="a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown outcome field"):
        fb.send_many([{"metric": "x", "value": 1, "model": "a", "extra": 1}])
    with pytest.raises(ValueError, match="route"):
        Feedback("http://127.0.0.1:9").send("converted", 1, model="a")
    assert fb.pending == 0
    fb.close()


def test_a_refused_batch_is_reported_with_the_routers_problems(fake) -> None:
    def refuse(n: int, body: bytes) -> Answer:
        return 422, {}, {"statusCode": 422, "code": "MS_FEEDBACK_INVALID", "message": "no outcome applied (1 problem): metric: undeclared",
                         "problems": [{"at": "metric", "message": "undeclared"}]}

    server = fake(refuse)
    fb = Feedback(server.url, route="churn")
    with pytest.raises(FeedbackRejected) as err:
        fb.post({"metric": "clicks", "value": 1, "model": "a"})
    assert err.value.status == 422 and err.value.problems == [{"at": "metric", "message": "undeclared"}]
    assert len(server.requests) == 1  # not retried
    fb.close()


# ---- a real router ---------------------------------------------------------------------------------

SPLIT = [("churn-v1", 50), ("churn-v2", 50)]


def router_config(models: dict[str, str], recording: Optional[str] = None) -> str:
    rec = f"recording: {{ path: {json.dumps(recording)} }}\n" if recording else ""
    return (
        "listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n" + rec +
        "models:\n" + "".join(f"  {n}: {{ url: \"{u}\" }}\n" for n, u in models.items()) +
        "routes:\n  - name: churn\n    path: /models/churn\n    salt: fb-test\n    record: true\n"
        "    split:\n      - { model: churn-v1, weight: 50 }\n      - { model: churn-v2, weight: 50 }\n"
        "    metrics:\n      - { name: converted, type: binary }\n      - { name: revenue, type: continuous }\n"
    )


def predict(client: Client, user_id: str) -> tuple[str, str]:
    body = json.dumps({"dataframe_records": [{"tenure_months": 3, "monthly_charges": 50, "support_calls": 1}]}).encode()
    status, headers, _ = client.request("POST", "/models/churn/invocations", body, {"content-type": "application/json", "x-user-id": user_id})
    assert status == 200
    return headers["x-request-id"], headers["x-modelsplit-model"]


def outcome_counts(router: Any) -> dict[str, dict[str, int]]:
    status, body = router.get_json("/admin/experiments/churn")
    assert status == 200, body
    return {metric: {m: r["outcomes"] for m, r in rep["models"].items()} for metric, rep in body["metrics"].items()}


def test_outcomes_reach_a_real_router_by_request_id_user_id_and_model(router_factory, models, tmp_path) -> None:
    with router_factory(router_config(models, str(tmp_path / "records.jsonl"))) as router:
        client = Client(router.url)
        served = [(f"user-{i}",) + predict(client, f"user-{i}") for i in range(200)]
        client.close()
        expected = {"converted": {"churn-v1": 0, "churn-v2": 0}, "revenue": {"churn-v1": 0, "churn-v2": 0}}
        with Feedback(router.url, route="churn", batch_size=64) as fb:
            for user_id, request_id, model in served:
                fb.send("converted", 1, request_id=request_id)  # one at a time, batched by the client
                expected["converted"][model] += 1
            for i in range(100):  # by user id: the router hashes it as assign() does
                uid = f"later-{i}"
                fb.send("revenue", 10.0 + i, user_id=uid)
                expected["revenue"][assign(uid, salt="fb-test", split=SPLIT)] += 1
        answer = fb.post([{"metric": "revenue", "value": 3.5, "model": "churn-v2"}] * 3)
        expected["revenue"]["churn-v2"] += 3
        assert answer["accepted"] == 3 and answer["attributed_by"]["model"] == 3
        assert fb.accepted == 303
        # A route's own feedback URL: the route comes from the path.
        scoped = Feedback(router.url + "/models/churn/feedback")
        assert scoped.post({"metric": "converted", "value": 0, "model": "churn-v1"})["accepted"] == 1
        expected["converted"]["churn-v1"] += 1
        scoped.close()
        assert outcome_counts(router) == expected


def test_one_refused_outcome_does_not_sink_the_rest_of_its_batch(router_factory, models, tmp_path) -> None:
    with router_factory(router_config(models, str(tmp_path / "records.jsonl"))) as router:
        fb = Feedback(router.url, route="churn", batch_size=1000, linger=30)
        good = [{"metric": "converted", "value": i % 2, "model": "churn-v1"} for i in range(10)]
        bad = [{"metric": "clicks", "value": 1, "model": "churn-v1"}, {"metric": "converted", "value": 0.5, "model": "churn-v2"}]
        fb.send_many(good[:4] + bad[:1] + good[4:8] + bad[1:] + good[8:])
        with pytest.raises(FeedbackRejected) as err:
            fb.flush(timeout=20)
        assert err.value.status == 422
        assert err.value.outcomes == [{"route": "churn", **b} for b in bad]
        assert [p["at"] for p in err.value.problems] == ["[4].metric", "[9].value"]
        assert "declares no metric" in err.value.problems[0]["message"]
        assert fb.accepted == 10
        fb.close()
        assert outcome_counts(router)["converted"] == {"churn-v1": 10, "churn-v2": 0}
