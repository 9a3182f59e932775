"""``replaypipe run``: the local stack — a Kafka broker and the three services.

Data stays under ``var/`` (broker log dirs, the embedded ClickHouse store), so a
second run keeps the recordings. A service (or the broker) that exits on its
own is restarted after a backoff (:class:`Supervisor`) while the others keep
running. Ctrl-C (or SIGTERM) stops the services first, all at once, then the
broker, with no process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.request import urlopen

from services.dev.kafka_broker import (
    PROJECT_ROOT,
    BrokerError,
    LocalKafkaBroker,
    exit_with_parent,
)
from services.shared.kafka import KafkaSettings, ensure_topics
from services.shared.keyring import with_local_raw_encryption

SERVICES = ("sink", "masker", "ingest")

# The readiness probe of a child this process started, on loopback: it sends no
# data, and the certificate may be the developer's own self-signed one.
_LOOPBACK_PROBE = ssl.create_default_context()
_LOOPBACK_PROBE.check_hostname = False
_LOOPBACK_PROBE.verify_mode = ssl.CERT_NONE


class StartCancelled(RuntimeError):
    """A stop was asked for (Ctrl-C) while the stack was still starting."""


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
    # ``replaypipe run``: the broker and services stop if this process is killed.
    stop_with_parent: bool = False
    # Polled while waiting for services to be ready: True ends the wait (StartCancelled).
    stop_requested: Callable[[], bool] = lambda: False
    broker: LocalKafkaBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, var_dir: Path) -> LocalStack:
        """The stack on the ports the services' own variables name (their defaults if unset).

        The local broker listens where ``KAFKA_BOOTSTRAP_SERVERS`` points (one
        ``127.0.0.1:PORT``), its controller on the next port.
        """
        from services.ingest.settings import IngestSettings
        from services.masker.settings import MaskerSettings
        from services.sink.settings import SinkSettings

        kafka = KafkaSettings.from_env()
        host, _, port = kafka.bootstrap_servers.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            raise ValueError(
                "replaypipe run starts its own broker: KAFKA_BOOTSTRAP_SERVERS must be"
                f" 127.0.0.1:PORT, not {kafka.bootstrap_servers!r}"
            )
        return cls(
            var_dir=var_dir,
            kafka_port=int(port),
            controller_port=int(port) + 1,
            ingest_port=IngestSettings.from_env().port,
            masker_port=MaskerSettings.from_env().port,
            sink_port=SinkSettings.from_env().port,
        )

    def service_env(self) -> dict[str, str]:
        """The environment every service process gets."""
        env = with_local_raw_encryption(dict(os.environ), self.var_dir)
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
            self.var_dir / "kafka",
            self.kafka_port,
            self.controller_port,
            stop_with_parent=self.stop_with_parent,
        )
        self.broker.start()
        asyncio.run(ensure_topics(self.broker.kafka_settings))

    def log_file(self, name: str) -> Path:
        """``var/logs/<name>.log``: the service's output."""
        return self.var_dir / "logs" / f"{name}.log"

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service as a child process logging to ``var/logs/<name>.log``."""
        logs = self.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file(name), "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name],
            env=self.service_env(),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches only the supervisor,
            # which then stops them (and then the broker) instead of all dying at once.
            start_new_session=True,
            preexec_fn=exit_with_parent if self.stop_with_parent else None,
        )
        log.close()  # the child has its own copy
        self.processes[name] = proc
        return proc

    def scheme(self, name: str) -> str:
        """``https`` for ingest when it serves TLS itself (``INGEST_TLS_CERT_FILE``), else http."""
        tls = self.extra_env.get("INGEST_TLS_CERT_FILE", os.environ.get("INGEST_TLS_CERT_FILE"))
        if name == "ingest" and tls:
            return "https"
        return "http"

    def wait_ready(self, name: str, port: int, timeout: float = 90.0) -> None:
        """Wait for a service's ``/readyz``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_requested():
                raise StartCancelled(f"stopped while waiting for {name}")
            proc = self.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.var_dir}/logs/{name}.log"
                )
            try:
                with urlopen(
                    f"{self.scheme(name)}://127.0.0.1:{port}/readyz",
                    timeout=2,
                    context=_LOOPBACK_PROBE if self.scheme(name) == "https" else None,
                ) as response:
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

    def stop_services(self, timeout: float = 30.0) -> None:
        """SIGTERM to every running service at once; SIGKILL those not gone by ``timeout``."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Services first (they flush and commit), then the broker."""
        self.stop_services()
        if self.broker is not None:
            self.broker.stop()


class ServiceGroup(Protocol):
    """What the supervisor needs of a stack: its processes, and a way to start one."""

    processes: dict[str, subprocess.Popen[bytes]]

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or start again) the service ``name``."""
        ...

    def log_file(self, name: str) -> Path:
        """Where the service ``name`` writes its output."""
        ...


@dataclass(frozen=True)
class RestartPolicy:
    """How long the supervisor waits before starting a crashed service again."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A service that stayed up this long was healthy: its next crash counts as the first.
    healthy_after_s: float = 60.0

    def delay_s(self, consecutive_crashes: int) -> float:
        """1 s, 2 s, 4 s, ... up to ``max_delay_s`` for the n-th crash in a row."""
        return min(self.first_delay_s * 2.0 ** (consecutive_crashes - 1), self.max_delay_s)


class Supervisor:
    """Restarts a service that exited on its own, with backoff; leaves the others alone.

    :meth:`check` is one round (notice exits, start the restarts that are due);
    the foreground loop of ``replaypipe run`` calls it twice a second. It never
    waits for a service to become ready, so one slow start delays nothing else.
    """

    def __init__(
        self,
        stack: ServiceGroup,
        policy: RestartPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self._stack = stack
        self._policy = policy or RestartPolicy()
        self._clock = clock
        self._say = say
        now = clock()
        self._started_at = dict.fromkeys(stack.processes, now)
        self._crashes_in_a_row: dict[str, int] = {}
        self._restart_at: dict[str, float] = {}
        self.restarts: dict[str, int] = dict.fromkeys(stack.processes, 0)

    def check(self) -> None:
        """Schedule a restart for each service that exited; start those that are due."""
        now = self._clock()
        for name, proc in list(self._stack.processes.items()):
            due = self._restart_at.get(name)
            if due is not None:
                if now >= due:
                    del self._restart_at[name]
                    self._stack.start_service(name)
                    self._started_at[name] = now
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self._say(f"replaypipe: {name} started again (restart {self.restarts[name]})")
                continue
            if proc.poll() is None:
                continue
            ran_s = now - self._started_at.get(name, now)
            healthy = ran_s >= self._policy.healthy_after_s
            crashes = 1 if healthy else self._crashes_in_a_row.get(name, 0) + 1
            self._crashes_in_a_row[name] = crashes
            delay_s = self._policy.delay_s(crashes)
            self._restart_at[name] = now + delay_s
            self._say(
                f"replaypipe: {name} exited with {proc.returncode} after {ran_s:.0f}s;"
                f" restarting in {delay_s:g}s (see {self._stack.log_file(name)})"
            )


class BrokerGroup:
    """The stack's broker seen as one supervised service, ``kafka``.

    Starting it again blocks until it answers (a few seconds): the services
    retry Kafka meanwhile, and none of them can do work without it anyway.
    """

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        assert stack.broker is not None and stack.broker.process is not None
        self.processes: dict[str, subprocess.Popen[bytes]] = {"kafka": stack.broker.process}

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start the broker again on the same data (``name`` is always ``kafka``)."""
        broker = self._stack.broker
        assert broker is not None
        # An exited process comes back to the supervisor, which tries again later.
        with contextlib.suppress(BrokerError):
            broker.start()
        assert broker.process is not None
        self.processes[name] = broker.process
        return broker.process

    def log_file(self, name: str) -> Path:
        """The broker's own log."""
        return self._stack.var_dir / "kafka" / "broker.log"


class StopRequest:
    """Set by Ctrl-C (SIGINT), SIGTERM or SIGHUP; the foreground loops poll it."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)
        # The services run in sessions of their own: a closed terminal (SIGHUP)
        # reaches only this process, which must then stop them.
        signal.signal(signal.SIGHUP, self._set)

    def _set(self, signum: int, _frame: object) -> None:
        self.requested = True


def run_broker_forever(var_dir: Path) -> int:
    """``replaypipe kafka``: only the local broker (and the topics), until Ctrl-C."""
    stack = LocalStack.from_env(var_dir)
    stack.stop_with_parent = True
    stop = StopRequest()
    stack.start_broker()
    assert stack.broker is not None and stack.broker.process is not None
    print(f"kafka ready on {stack.broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
    while not stop.requested and stack.broker.process.poll() is None:
        time.sleep(0.5)
    stack.broker.stop()
    return 0


def run_forever(var_dir: Path) -> int:
    """Start the stack, print where it listens, restart what crashes, stop all on Ctrl-C."""
    from services.console.dev_stack import console_env, start_console

    stack = LocalStack.from_env(var_dir)
    stack.stop_with_parent = True
    stack.extra_env.update(console_env(var_dir, stack.sink_port, stack.ingest_port))
    stop = StopRequest()
    stack.stop_requested = lambda: stop.requested
    try:
        print("replaypipe: starting Kafka broker and services ...", flush=True)
        try:
            stack.start()
            console_lines = start_console(stack)
        except StartCancelled:
            return 0
        print(
            f"""
replaypipe is running (logs in {var_dir}/logs, data in {var_dir}):
  ingest    POST {stack.scheme("ingest")}://127.0.0.1:{stack.ingest_port}/v1/recordings?key=pk_demo_local
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
        supervisors = [Supervisor(BrokerGroup(stack)), Supervisor(stack)]
        while not stop.requested:
            for supervisor in supervisors:
                supervisor.check()
            time.sleep(0.5)
    finally:
        print("replaypipe: stopping ...", flush=True)
        stack.stop()
        print("replaypipe: stopped", flush=True)
    return 0
