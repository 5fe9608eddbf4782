"""Starting and stopping the example's processes: an MLflow tracking server, `mlflow models serve`
for each model version, and the modelsplit router. Shared by up.py (the walkthrough) and
test_e2e.py (the integration test), so the test runs what a newcomer runs.

Every process is started in a session of its own (its own process group) with its output in a
log file, and stopped by signalling that group: `mlflow server` and `mlflow models serve` start
worker processes of their own, which must go too. Standard library only.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ROUTER_CLI = REPO / "dist" / "cli" / "main.js"


class StackError(RuntimeError):
    """A process that did not start, or stopped, with the end of its log in the message."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def mlflow_bin() -> str:
    """The `mlflow` command of the Python running this (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mlflow"
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if found is None:
        raise StackError("no `mlflow` command: activate the venv with requirements.txt installed")
    return found


def child_env(**extra: str) -> dict[str, str]:
    """The environment for the processes started here: this Python's bin directory first on PATH,
    since `mlflow models serve` runs `uvicorn` by name (a venv used without activating it)."""
    env = dict(os.environ, **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def http(method: str, url: str, body: Any = None, headers: Optional[dict[str, str]] = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request; returns (status, headers, body) for every status, raises only when no answer came."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def get_json(url: str, timeout: float = 10.0) -> Any:
    status, _, body = http("GET", url, timeout=timeout)
    if status != 200:
        raise StackError(f"GET {url}: {status} {body[:300]!r}")
    return json.loads(body)


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25,
               proc: Optional["Proc"] = None) -> Any:
    """Polls `check` until it returns something truthy (which is returned) or `timeout` seconds
    pass (StackError saying what was awaited, and the last exception if any). With `proc`, fails
    at once when that process has exited."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        if proc is not None and proc.popen.poll() is not None:
            raise StackError(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}\n{proc.log_tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - a server still starting fails in many ways
            last = e
        if time.monotonic() >= deadline:
            tail = f"\n{proc.log_tail()}" if proc is not None else ""
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else "") + tail)
        time.sleep(interval)


class Proc:
    """A started process: its own process group, output in `log`."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log, "ab")
        self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd, start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log})"
        return f"--- last lines of {self.log} ---\n" + "\n".join(text[-lines:])

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process group, then SIGKILL to what is left after `timeout` seconds."""
        pgid = self.popen.pid  # start_new_session: the group id is the leader's pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # The leader may be gone while workers of its group linger: kill the group either way.
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                os.killpg(pgid, 0)  # raises once no process of the group is left
                time.sleep(0.1)
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()


_STACKS: "list[Stack]" = []


@atexit.register
def _stop_all() -> None:
    """A last resort when the interpreter exits with processes still running (an exception
    nobody caught, a SIGTERM turned into KeyboardInterrupt): none of them outlives it."""
    for s in list(_STACKS):
        s.stop()


class Stack:
    """The processes of one run, stopped by `stop()` (or leaving a `with`, or at exit)."""

    def __init__(self, workdir: Path, quiet: bool = False) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.quiet = quiet
        _STACKS.append(self)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """The router first (it may still be writing to MLflow), then everything else at once."""
        routers = [p for p in self.procs if p.name == "router"]
        others = [p for p in reversed(self.procs) if p.name != "router"]
        self.procs = []
        for group in (routers, others):
            for p in group:
                if p.running():
                    self.say(f"stopping {p.name} (pid {p.popen.pid})")
            threads = [threading.Thread(target=p.stop) for p in group]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    def start(self, name: str, cmd: list[str], env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None) -> Proc:
        p = Proc(name, cmd, self.workdir / "logs" / f"{name}.log", env=env if env is not None else child_env(), cwd=cwd)
        self.procs.append(p)
        return p

    def mlflow_server(self, port: int, timeout: float = 90) -> str:
        """`mlflow server` with a SQLite backend store and a local artifact root under workdir/mlflow;
        returns its URL once GET /health answers."""
        store = self.workdir / "mlflow"
        (store / "artifacts").mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}"
        self.say(f"starting the MLflow tracking server on {url} (store: {store})")
        p = self.start("mlflow-server", [
            mlflow_bin(), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--default-artifact-root", str(store / "artifacts"),
            "--workers", "1",
        ])
        wait_until(f"{url}/health", lambda: http("GET", f"{url}/health", timeout=2)[0] == 200, timeout, proc=p)
        return url

    def serve_model(self, name: str, model_uri: str, port: int, tracking_uri: str) -> Proc:
        """`mlflow models serve -m MODEL_URI --env-manager local` on 127.0.0.1:port (not awaited:
        several start at once; `wait_model` waits)."""
        self.say(f"serving {model_uri} on http://127.0.0.1:{port} ({name})")
        env = child_env(MLFLOW_TRACKING_URI=tracking_uri)
        return self.start(name, [
            mlflow_bin(), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port),
        ], env=env)

    @staticmethod
    def wait_model(p: Proc, port: int, timeout: float = 120) -> None:
        wait_until(f"{p.name} on port {port}", lambda: http("GET", f"http://127.0.0.1:{port}/ping", timeout=2)[0] == 200,
                   timeout, proc=p)

    def router(self, config: Path, admin_url: str, timeout: float = 30, log_level: str = "info") -> Proc:
        """`node dist/cli/main.js serve --config CONFIG`; returns once its admin port's /readyz answers 200."""
        if not ROUTER_CLI.exists():
            raise StackError(f"{ROUTER_CLI} is missing: run `npm ci && npm run build` in {REPO} first")
        node = shutil.which("node")
        if node is None:
            raise StackError("no `node` on PATH: the router needs Node.js 20.18.1 or newer")
        self.say(f"starting the router on {config}")
        p = self.start("router", [node, str(ROUTER_CLI), "serve", "--config", str(config), "--log-level", log_level], cwd=REPO)
        wait_until(f"{admin_url}/readyz", lambda: http("GET", f"{admin_url}/readyz", timeout=2)[0] == 200, timeout, proc=p)
        return p
