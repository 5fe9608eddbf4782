"""`modelsplit report --kafka` while the broker restarts mid-read (issue 21's hostile inputs): the
reader is frozen (SIGSTOP) after its first batch, the broker is killed (SIGKILL, as in a crash) and,
in the first test, started again on the same data before the reader goes on (SIGCONT). What a user
can rely on: the report it prints is the report over the topic's records, each once (none counted
twice, none lost), or, when the broker does not come back, it exits 1 saying it cannot read, and
prints no report (never one over the part it had read). The topic: a seeded experiment's records
with their CloudEvents ids, a few produced twice (an at-least-once redelivery). Skipped, saying why,
without the broker's jars (scripts/kafka/fetch.sh: mvn, Maven Central)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from experiment_data import CONFIG, make_experiment
from support import CLI, REPO, broker, broker_ports
from test_experiment_summary import compare, report_experiments

TOOL = Path(__file__).with_name("kafka_tool.mjs")
TOPIC = "ms-restart"


def _tool(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["node", str(TOOL), *args], input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def topic(cli: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A broker with the topic written, the report over the same records (each once) from a file."""
    if shutil.which("mvn") is None:
        pytest.skip("the Kafka broker's jars need mvn (apt-get install maven)")
    done = subprocess.run(["bash", str(REPO / "scripts" / "kafka" / "fetch.sh")], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"scripts/kafka/fetch.sh could not fetch the broker's jars: {done.stderr.strip()[-300:]}")
    tmp = tmp_path_factory.mktemp("restart")
    directory, port = tmp / "kafka", broker_ports()
    broker("start", directory, port)
    try:
        address = f"127.0.0.1:{port}"
        _tool("create", address, TOPIC)
        records = make_experiment(seed=5, n_users=500).records
        messages = [{"key": None, "value": json.dumps(r), "headers": {"ce_id": f"ev-{i}"}} for i, r in enumerate(records)]
        again = messages[100:103] + messages[5000:5002]  # redelivered, later in the topic, with their ids
        messages = messages[:6000] + again + messages[6000:]
        for at in range(0, len(messages), 2000):  # a broker takes at most 1 MiB a request
            _tool("produce", address, TOPIC, stdin="".join(json.dumps(m) + "\n" for m in messages[at:at + 2000]))
        config = tmp / "router.yaml"
        config.write_text(CONFIG.format(route="r", analysis='{ unit: user }'), encoding="utf-8")
        once = tmp / "once.jsonl"
        with open(once, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        yield {"address": address, "port": port, "directory": directory, "config": config,
               "records": len(records), "duplicates": len(again), "theirs": report_experiments(cli, config, once)}
    finally:
        broker("kill", directory)


class _Reading:
    """`modelsplit report --kafka ... --progress --json` running, its stderr collected as it comes."""

    def __init__(self, cli: Path, t: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(["node", str(cli), "report", "--kafka", t["address"], "--topic", TOPIC,
                                      "--config", str(t["config"]), "--json", "--progress"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = b""
        self.first_batch = threading.Event()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(4096):
            self.err += chunk
            if b"%" in self.err:
                self.first_batch.set()
        self.first_batch.set()

    def freeze_after_first_batch(self) -> str:
        """SIGSTOP once the first progress line came; returns that line (the share read by then)."""
        assert self.first_batch.wait(120), "no progress line within 120 s"
        assert self.proc.poll() is None, f"the report ended before it could be frozen: {self.err.decode()}"
        self.proc.send_signal(signal.SIGSTOP)
        return self.err.decode().split("\r")[1]

    def go_on(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGCONT)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # to its end: the process exited, or closed it
        code = self.proc.wait(timeout=300)
        self.thread.join(30)
        return code, out.decode(), self.err.decode()


def test_a_broker_restarted_mid_read_reads_each_record_once(cli, topic) -> None:
    reading = _Reading(cli, topic)
    try:
        first = reading.freeze_after_first_batch()
        assert "100%" not in first, first  # the read was under way, not done
        broker("kill", topic["directory"])
        broker("start", topic["directory"], topic["port"])
        code, out, err = reading.go_on()
    finally:
        if reading.proc.poll() is None:
            reading.proc.kill()
    if code != 0:
        # kafkajs' consumer does not always resume after the broker it was fetching from restarts
        # (seen once in CI: connected again, then no fetch for minutes). The read then ends with a
        # clear error after the reader's stall bound (60 s without a batch), never half a report.
        assert code == 1 and out == "", (code, err)
        assert "modelsplit report: cannot read" in err and "still to read" in err, err
        return
    # Every record read once: the count and the duplicates (the redelivered copies only, nothing re-read).
    assert (f"read {topic['records']} record(s) from kafka {topic['address']} topic {TOPIC}; 0 message(s) skipped, "
            f"{topic['duplicates']} duplicate(s) counted once") in err, err
    doc = json.loads(out)
    assert doc["duplicates"] == topic["duplicates"]
    assert compare(doc["experiments"], topic["theirs"]) == []


def test_a_broker_gone_mid_read_is_an_error_not_half_a_report(cli, topic) -> None:
    reading = _Reading(cli, topic)
    try:
        reading.freeze_after_first_batch()
        broker("kill", topic["directory"])
        code, out, err = reading.go_on()
    finally:
        if reading.proc.poll() is None:
            reading.proc.kill()
        broker("start", topic["directory"], topic["port"])
    assert code == 1, (code, err)
    assert out == ""
    assert "modelsplit report: cannot read" in err, err
    assert "record(s) from kafka" not in err  # no summary line: nothing was reported


def test_a_broker_restarting_while_the_reader_runs_is_all_or_an_error(cli, topic) -> None:
    """Not frozen: the reader meets the broker while it is down (the seconds a broker takes to start).
    Its client retries a request once, so in the runs recorded here it ends with exit 1 and the
    connection error; if it does get through, its report is the whole topic's, each record once."""
    reading = _Reading(cli, topic)
    try:
        assert reading.first_batch.wait(120), "no progress line within 120 s"
        broker("kill", topic["directory"])
        broker("start", topic["directory"], topic["port"])
        assert reading.proc.stdout is not None
        out = reading.proc.stdout.read().decode()
        code = reading.proc.wait(timeout=300)
        reading.thread.join(30)
    finally:
        if reading.proc.poll() is None:
            reading.proc.kill()
    err = reading.err.decode()
    if code == 0:
        assert f"read {topic['records']} record(s)" in err and f"{topic['duplicates']} duplicate(s) counted once" in err, err
        assert compare(json.loads(out)["experiments"], topic["theirs"]) == []
    else:
        assert code == 1 and out == "", (code, err)
        assert "modelsplit report: cannot read" in err and "record(s) from kafka" not in err, err
