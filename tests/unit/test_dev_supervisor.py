"""``replaypipe run`` restarts a crashed service with backoff and leaves the others running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from services.dev.stack import LocalStack, RestartPolicy, StartCancelled, Supervisor


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeStack:
    """Three services whose processes the test 'kills' by setting a return code."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: list[str] = []
        for name in ("sink", "masker", "ingest"):
            self.processes[name] = cast(Any, FakeProcess())

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        self.started.append(name)
        self.processes[name] = cast(Any, FakeProcess())
        return self.processes[name]

    def log_file(self, name: str) -> Path:
        return Path("var/logs") / f"{name}.log"

    def kill(self, name: str, code: int = -9) -> None:
        cast(FakeProcess, self.processes[name]).returncode = code


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _supervised() -> tuple[FakeStack, Clock, list[str], Supervisor]:
    stack, clock, said = FakeStack(), Clock(), list[str]()
    policy = RestartPolicy(first_delay_s=1, max_delay_s=8, healthy_after_s=60)
    return stack, clock, said, Supervisor(stack, policy, clock=clock, say=said.append)


def test_a_killed_service_is_started_again_after_the_first_delay() -> None:
    stack, clock, said, supervisor = _supervised()
    clock.now = 100
    stack.kill("masker")

    supervisor.check()
    assert stack.started == []
    clock.now = 101
    supervisor.check()

    assert stack.started == ["masker"]
    assert supervisor.restarts["masker"] == 1
    assert said[0].startswith("replaypipe: masker exited with -9 after 100s; restarting in 1s")


def test_the_other_services_are_left_alone() -> None:
    stack, clock, _said, supervisor = _supervised()
    ingest, sink = stack.processes["ingest"], stack.processes["sink"]
    stack.kill("masker")

    for step in range(10):
        clock.now = step
        supervisor.check()

    assert stack.started == ["masker"]
    assert stack.processes["ingest"] is ingest and stack.processes["sink"] is sink


def test_a_service_crashing_again_at_once_waits_twice_as_long_up_to_the_maximum() -> None:
    stack, clock, _said, supervisor = _supervised()
    delays: list[float] = []
    for _ in range(6):
        stack.kill("sink", code=1)
        supervisor.check()
        waited = 0.0
        while stack.started.count("sink") < len(delays) + 1:
            clock.now += 0.5
            waited += 0.5
            supervisor.check()
        delays.append(waited)

    assert delays == [1, 2, 4, 8, 8, 8]


def test_a_service_that_ran_a_while_before_crashing_starts_from_the_first_delay() -> None:
    stack, clock, said, supervisor = _supervised()
    for _ in range(3):  # three quick crashes: the next delay would be 8 s
        stack.kill("ingest")
        supervisor.check()
        clock.now += 10
        supervisor.check()

    clock.now += 120  # then it runs for two minutes
    stack.kill("ingest")
    supervisor.check()

    assert "restarting in 1s" in said[-1]


def test_a_child_started_to_exit_with_its_parent_stops_when_the_parent_is_killed(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time;"
            " from services.dev.kafka_broker import exit_with_parent;"
            " child = subprocess.Popen(['sleep', '60'], start_new_session=True,"
            " preexec_fn=exit_with_parent);"
            f" open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)",
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_stop_asked_for_while_starting_ends_the_wait_for_readiness(tmp_path: Path) -> None:
    stack = LocalStack(var_dir=tmp_path, stop_requested=lambda: True)

    with pytest.raises(StartCancelled, match="ingest"):
        stack.wait_ready("ingest", port=1, timeout=60)
