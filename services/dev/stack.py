"""``replaypipe run``: the local stack — a Kafka broker and the three services.

Data stays under ``var/`` (broker log dirs, the embedded ClickHouse store), so a
second run keeps the recordings. Ctrl-C (or SIGTERM) stops the services first,
then the broker, with no process left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from services.dev.kafka_broker import PROJECT_ROOT, LocalKafkaBroker
from services.shared.kafka import KafkaSettings, ensure_topics

SERVICES = ("sink", "masker", "ingest")


@dataclass
class LocalStack:
    """The broker and the three service processes, with their ports."""

    var_dir: Path
    kafka_port: int = 9092
    controller_port: int = 9093
    ingest_port: int = 8080
    masker_port: int = 8081
    sink_port: int = 8082
    sites_file: Path = PROJECT_ROOT / "config" / "sites.json"
    extra_env: dict[str, str] = field(default_factory=dict)
    broker: LocalKafkaBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def service_env(self) -> dict[str, str]:
        """The environment every service process gets."""
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_port}",
                "SITES_FILE": str(self.sites_file),
                "INGEST_PORT": str(self.ingest_port),
                "MASKER_PORT": str(self.masker_port),
                "SINK_PORT": str(self.sink_port),
                "CLICKHOUSE_URL": env.get(
                    "CLICKHOUSE_URL", f"chdb://{self.var_dir / 'clickhouse'}"
                ),
                "MASKER_STATE_DIR": str(self.var_dir / "masker"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start_broker(self) -> None:
        """Start (or restart) the Kafka broker and create the topics."""
        self.broker = LocalKafkaBroker(
            self.var_dir / "kafka", self.kafka_port, self.controller_port
        )
        self.broker.start()
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=self.broker.bootstrap_servers)))

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service as a child process logging to ``var/logs/<name>.log``."""
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name],
            env=self.service_env(),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = proc
        return proc

    def wait_ready(self, name: str, port: int, timeout: float = 90.0) -> None:
        """Wait for a service's ``/readyz``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.var_dir}/logs/{name}.log"
                )
            try:
                with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s")

    def start(self) -> None:
        """Broker, then the services."""
        self.start_broker()
        self.start_services()

    def start_services(self) -> None:
        """Sink, masker and ingest (on a broker already running), until all are ready."""
        ports = {"sink": self.sink_port, "masker": self.masker_port, "ingest": self.ingest_port}
        for name in SERVICES:
            self.start_service(name)
        for name in SERVICES:
            self.wait_ready(name, ports[name])

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop one service (SIGTERM: graceful; SIGKILL: crash)."""
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Services first (they flush and commit), then the broker."""
        for name in ("console", *reversed(SERVICES)):
            self.stop_service(name)
        if self.broker is not None:
            self.broker.stop()


class StopRequest:
    """Set by Ctrl-C (SIGINT) or SIGTERM; the foreground loops poll it."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum: int, _frame: object) -> None:
        self.requested = True


def run_broker_forever(var_dir: Path) -> int:
    """``replaypipe kafka``: only the local broker (and the topics), until Ctrl-C."""
    stack = LocalStack(var_dir=var_dir)
    stop = StopRequest()
    stack.start_broker()
    assert stack.broker is not None and stack.broker.process is not None
    print(f"kafka ready on {stack.broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
    while not stop.requested and stack.broker.process.poll() is None:
        time.sleep(0.5)
    stack.broker.stop()
    return 0


def run_forever(var_dir: Path) -> int:
    """Start the stack, print where it listens, wait for Ctrl-C, stop everything."""
    from services.console.dev_stack import console_env, start_console

    stack = LocalStack(var_dir=var_dir)
    stack.extra_env.update(console_env(var_dir, stack.sink_port, stack.ingest_port))
    stop = StopRequest()
    try:
        print("replaypipe: starting Kafka broker and services ...", flush=True)
        stack.start()
        console_lines = start_console(stack)
        print(
            f"""
replaypipe is running (logs in {var_dir}/logs, data in {var_dir}):
  ingest    POST http://127.0.0.1:{stack.ingest_port}/v1/recordings?key=pk_demo_local
  read API  GET  http://127.0.0.1:{stack.sink_port}/v1/sites/demo/sessions
            (header: Authorization: Bearer rt_demo_local)
  viewer    http://127.0.0.1:{stack.sink_port}/viewer/demo#token=rt_demo_local
  metrics   http://127.0.0.1:{stack.ingest_port}/metrics  :{stack.masker_port}/metrics  \
:{stack.sink_port}/metrics
  kafka     127.0.0.1:{stack.kafka_port}
{console_lines}
Press Ctrl-C to stop.""",
            flush=True,
        )
        while not stop.requested:
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    print(f"replaypipe: {name} exited ({proc.returncode}); stopping", flush=True)
                    stop.requested = True
            time.sleep(0.5)
    finally:
        print("replaypipe: stopping ...", flush=True)
        stack.stop()
        print("replaypipe: stopped", flush=True)
    return 0
