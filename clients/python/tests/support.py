"""Shared test helpers: the repository's paths, the built router, model servers, and a router
started from the repository (``node dist/cli/main.js serve``) on ephemeral ports."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "test" / "fixtures"
CLI = REPO / "dist" / "cli" / "main.js"
BANNER = re.compile(r"^modelsplit: predictions on (\S+), admin on (\S+) ")


# ---- model servers -------------------------------------------------------------------------------

# Churn models in MLflow's scoring protocol: {"dataframe_records": [...]} → {"predictions": [...]}.
COEFFICIENTS = {
    "v1": (-1.2, -0.04, 0.021, 0.30),
    "v2": (-1.0, -0.06, 0.020, 0.32),
    "v3": (-1.4, -0.05, 0.018, 0.55),
}


def churn_probability(version: str, row: dict[str, Any]) -> float:
    import math

    b0, b1, b2, b3 = COEFFICIENTS[version]
    z = b0 + b1 * float(row.get("tenure_months", 0)) + b2 * float(row.get("monthly_charges", 0)) + b3 * float(row.get("support_calls", 0))
    return round(1 / (1 + math.exp(-z)), 6)


class _ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    version_name = "v1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the router's
        # delayed ACKs hold every answer back some 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        rows = body.get("dataframe_records") or []
        answer = json.dumps({"predictions": [churn_probability(self.version_name, r) for r in rows]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class ModelServer:
    def __init__(self, version: str) -> None:
        handler = type(f"Handler_{version}", (_ModelHandler,), {"version_name": version})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the router ----------------------------------------------------------------------------------


class Router:
    """A router process started from the repository's dist/."""

    def __init__(self, proc: subprocess.Popen[str], url: str, admin_url: str, config: Path, output: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.admin_url = admin_url
        self.config = config
        self.output = output

    def get_json(self, path: str, admin: bool = True) -> Any:
        base = urllib.parse.urlsplit(self.admin_url if admin else self.url)
        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def stop(self) -> int:
        """SIGTERM: the router drains and writes every buffered record, then exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def start_router(cli: Path, config_text: str, directory: Path) -> Iterator[Router]:
    """Writes the config to `directory/router.yaml` and runs `node dist/cli/main.js serve` on it
    (the config should listen on port 0); waits for the banner line with the two URLs."""
    config = directory / "router.yaml"
    config.write_text(config_text, encoding="utf-8")
    proc = subprocess.Popen(["node", str(cli), "serve", "--config", str(config), "--log-level", "warn"],
                            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8")
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = BANNER.match(line)
            if m and not ready.is_set():
                found["url"], found["admin"] = m.group(1), m.group(2)
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(30) or "url" not in found:
        proc.kill()
        raise RuntimeError("router did not start:\n" + "".join(output))
    router = Router(proc, found["url"], found["admin"], config, output)
    try:
        yield router
    finally:
        router.stop()


class Client:
    """A keep-alive HTTP client for driving traffic (one per thread)."""

    def __init__(self, base_url: str) -> None:
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def run_cli(cli: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(cli), *args], cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=120)



# ---- traffic through a real router, for the record and experiment tests ------------------------

TRAFFIC_CONFIG = """\
listen: {{ host: 127.0.0.1, port: 0 }}
admin: {{ host: 127.0.0.1, port: 0 }}
recording: {{ path: ./records/predictions.jsonl, max_bytes: 262144, keep: 1000, include_inputs: true }}
models:
  churn-v1: {{ url: "{v1}" }}
  churn-v2: {{ url: "{v2}" }}
  churn-v3: {{ url: "{v3}" }}
routes:
  - name: churn
    path: /models/churn
    salt: churn-py
    allow_override: true
    missing_user_id: random
    record: true
    split:
      - {{ model: churn-v1, weight: 60 }}
      - {{ model: churn-v2, weight: 40 }}
    shadow:
      - {{ model: churn-v3, percent: 100 }}
    metrics:
      - {{ name: converted, type: binary, mde: 0.05 }}
      - {{ name: revenue, type: continuous }}
      - {{ name: churned, type: binary, higher_is_better: false }}
  - name: fraud
    path: /models/fraud
    hash: nginx
    record: true
    split:
      - {{ model: churn-v2, weight: 50 }}
      - {{ model: churn-v3, weight: 50 }}
    metrics:
      - {{ name: caught, type: binary }}
"""


def run_traffic(cli: Path, models: dict[str, str], directory: Path, churn_requests: int = 2400, fraud_requests: int = 600) -> dict[str, Any]:
    import random
    from concurrent.futures import ThreadPoolExecutor

    from modelsplit import Feedback

    config_text = TRAFFIC_CONFIG.format(v1=models["churn-v1"], v2=models["churn-v2"], v3=models["churn-v3"])
    plan: list[tuple[str, Optional[str], dict[str, str]]] = []
    for i in range(churn_requests):
        headers = {"content-type": "application/json"}
        uid: Optional[str] = f"user-{i // 2}"  # two requests per user
        if i % 80 == 7:
            uid = None  # missing_user_id: random
        elif i % 80 == 11:
            headers["x-modelsplit-model"] = "churn-v2"  # a QA override
        if uid is not None:
            headers["x-user-id"] = uid
        plan.append(("/models/churn/invocations", uid, headers))
    for i in range(fraud_requests):
        uid = f"acct-{i}"
        plan.append(("/models/fraud/invocations", uid, {"content-type": "application/json", "x-user-id": uid}))

    served: list[dict[str, Any]] = []
    with start_router(cli, config_text, directory) as router:
        def drive(part: list[tuple[int, tuple[str, Optional[str], dict[str, str]]]]) -> list[dict[str, Any]]:
            client = Client(router.url)
            out = []
            try:
                for n, (path, uid, headers) in part:
                    row = {"tenure_months": n % 60, "monthly_charges": 20 + n % 90, "support_calls": n % 5}
                    status, h, _ = client.request("POST", path, json.dumps({"dataframe_records": [row]}).encode(), headers)
                    assert status == 200, status
                    out.append({"n": n, "route": path.split("/")[2], "user_id": uid, "request_id": h["x-request-id"], "model": h["x-modelsplit-model"]})
            finally:
                client.close()
            return out

        indexed = list(enumerate(plan))
        with ThreadPoolExecutor(4) as pool:
            for part in pool.map(drive, [indexed[k::4] for k in range(4)]):
                served.extend(part)
        served.sort(key=lambda r: r["n"])

        rng = random.Random(2026)
        rates = {"churn-v1": 0.30, "churn-v2": 0.42, "churn-v3": 0.35}
        sent = 0
        with Feedback(router.url, batch_size=500) as fb:
            for r in served:
                if r["route"] == "churn":
                    fb.send("converted", int(rng.random() < rates[r["model"]]), route="churn", request_id=r["request_id"])
                    sent += 1
                    if r["user_id"] is not None and r["n"] % 2 == 0:
                        # Values near 1e6 with a small spread: the stable totals keep every digit.
                        lift = 0.05 if r["model"] == "churn-v2" else 0.0
                        fb.send("revenue", 1e6 + lift + rng.gauss(0, 0.25), route="churn", user_id=r["user_id"])
                        sent += 1
                    if r["n"] % 3 == 0:
                        fb.send("churned", rng.random() < 0.2, route="churn", model=r["model"])
                        sent += 1
                else:
                    fb.send("caught", int(rng.random() < 0.5), route="fraud", user_id=r["user_id"])
                    sent += 1
        status, live = router.get_json("/admin/experiments")
        assert status == 200
        code = router.stop()
        assert code == 0, "".join(router.output)

    base = directory / "records" / "predictions.jsonl"
    with open(base, "ab") as f:
        f.write(b'{"type":"prediction","schema":1,"ts":"2026-01-01T00:00:00.000Z","route":"churn","primary":{"mod')
    return {"base": base, "config": directory / "router.yaml", "served": served, "outcomes_sent": sent,
            "live_experiments": live["routes"], "directory": directory}


# ---- a real Prometheus scraping routers ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A real Prometheus (Debian's package: scripts/install-prometheus.sh) on 127.0.0.1, its own data
    directory, scraping the routers' admin listeners every second."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc = proc
        self.url = url

    def query(self, q: str) -> list[dict[str, Any]]:
        """An instant query's samples; raises with Prometheus's error when it fails."""
        with urllib.request.urlopen(f"{self.url}/api/v1/query?query={urllib.parse.quote(q)}", timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{q}: {body.get('error')}")
        return list(body["data"]["result"])

    def scalar(self, q: str) -> float:
        """The value of a query with one sample (0 when it has none)."""
        result = self.query(q)
        return float(result[0]["value"][1]) if result else 0.0


@contextmanager
def start_prometheus(targets: list[str], port: int, directory: Path) -> Iterator[Prometheus]:
    """Starts `prometheus` on `port` (chosen before the routers that read it start) scraping
    `targets` (host:port) every second; waits until it is ready; stops it at the end."""
    import shutil
    import time

    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (bash scripts/install-prometheus.sh)")
    config = directory / "prometheus.yml"
    config.write_text("global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
                      "scrape_configs:\n"
                      f"  - job_name: modelsplit\n    static_configs: [{{ targets: {json.dumps(targets)} }}]\n",
                      encoding="utf-8")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"prometheus exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus was not ready within 30 s")
            time.sleep(0.1)
        yield Prometheus(proc, url)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(get: Any, expected: Any, what: str, timeout: float = 60.0) -> None:
    """Polls `get()` until it equals `expected`, or fails after `timeout` seconds naming `what` and
    the last value (a condition other processes make true: a scrape, a flush)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {value!r}, not {expected!r}, after {timeout} s")
        time.sleep(0.2)


# ---- a real Kafka broker -------------------------------------------------------------------------

BROKER_SCRIPT = REPO / "scripts" / "kafka" / "broker.sh"


def broker_ports() -> int:
    """A free port whose next port is free too (the broker's listener and its controller's)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def broker(command: str, directory: Path, port: Optional[int] = None) -> None:
    """scripts/kafka/broker.sh COMMAND DIRECTORY [PORT]: start (waits until it listens), stop, kill."""
    args = ["bash", str(BROKER_SCRIPT), command, str(directory)] + ([str(port)] if port is not None else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"broker.sh {command}: {done.stderr.strip()[-1000:]}")
