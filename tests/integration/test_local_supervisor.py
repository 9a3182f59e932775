"""``replaypipe run`` supervises: a service or the broker killed with -9 comes back alone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from services.dev.kafka_broker import PROJECT_ROOT, free_port

pytestmark = pytest.mark.integration


def _status(port: int, path: str) -> int | None:
    try:
        with urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def _children(pid: int) -> dict[str, int]:
    """The service processes of ``replaypipe run``: service name -> pid."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"services.cli" in argv:
            found[argv[argv.index(b"services.cli") + 1].decode()] = int(entry.name)
    return found


def _logged(log: Path, msg: str) -> dict[str, object]:
    """The first JSON log line of ``log`` whose ``msg`` is ``msg``."""
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("msg") == msg:
                return dict(doc)
    raise AssertionError(f"{log.name} has no line {msg!r}")


def _wait_until(condition: object, timeout_s: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def test_run_restarts_a_killed_masker_and_broker_keeps_the_others_up_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    kafka_port = free_port()
    ports = {
        "ingest": free_port(),
        "masker": free_port(),
        "sink": free_port(),
        "console": free_port(),
    }
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "INGEST_PORT": str(ports["ingest"]),
        "MASKER_PORT": str(ports["masker"]),
        "SINK_PORT": str(ports["sink"]),
        "CONSOLE_PORT": str(ports["console"]),
    }
    env.pop("CLICKHOUSE_URL", None)
    out = (tmp_path / "run.out").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", str(tmp_path / "var")],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    output = tmp_path / "run.out"
    try:
        assert _wait_until(lambda: b"Press Ctrl-C to stop." in output.read_bytes(), 240), (
            output.read_text()[-3000:]
        )
        before = _children(run.pid)
        assert set(before) == {"ingest", "masker", "sink", "console"}

        os.kill(before["masker"], signal.SIGKILL)
        down: list[str] = []

        def masker_back() -> bool:
            down.extend(
                name
                for name in ("ingest", "sink", "console")
                if _status(ports[name], "/healthz") != 200
            )
            return _status(ports["masker"], "/readyz") == 200

        time.sleep(0.5)
        assert _wait_until(masker_back, 120), output.read_text()[-3000:]
        after = _children(run.pid)
        assert after["masker"] != before["masker"]
        assert [after[name] for name in ("ingest", "sink", "console")] == [
            before[name] for name in ("ingest", "sink", "console")
        ]
        assert down == []
        assert b"masker exited with -9" in output.read_bytes()
        logs = tmp_path / "var" / "logs"
        assert _logged(logs / "ingest.log", "ingest listening")["port"] == ports["ingest"]
        assert _logged(logs / "sink.log", "sink listening")["port"] == ports["sink"]
        assert _logged(logs / "sink.log", "migration applied")["migration"] == "events"

        broker_pid = int((tmp_path / "var" / "kafka" / "broker.pid").read_text())
        os.killpg(broker_pid, signal.SIGKILL)
        assert _wait_until(lambda: b"kafka started again" in output.read_bytes(), 120), (
            output.read_text()[-3000:]
        )
        assert _wait_until(lambda: _status(ports["ingest"], "/readyz") == 200, 60)
        assert _children(run.pid) == after, "the services kept running through the broker restart"

        stopping = time.monotonic()
        run.send_signal(signal.SIGINT)
        assert run.wait(90) == 0
        took_s = time.monotonic() - stopping
        assert _children(run.pid) == {}
        assert all(not Path(f"/proc/{pid}").exists() for pid in after.values())
        assert took_s < 60, f"Ctrl-C took {took_s:.0f}s"
    finally:
        _stop_everything(run, tmp_path / "var")
        out.close()


def _stop_everything(run: subprocess.Popen[bytes], var_dir: Path) -> None:
    """After a failed assertion: no service or broker may outlive the test."""
    children = _children(run.pid)
    if run.poll() is None:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
    broker_pid = var_dir / "kafka" / "broker.pid"
    pids = [*children.values(), *([int(broker_pid.read_text())] if broker_pid.exists() else [])]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
