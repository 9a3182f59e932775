"""A real single-node Apache Kafka broker (KRaft mode) for development and tests.

Runs the jars that ``scripts/bootstrap.sh`` resolved from Maven Central into
``.cache/kafka/libs``. Used by ``replaypipe kafka`` / ``make run`` (data kept in
``var/kafka``) and by the test suite (a throwaway broker in a temp folder).
"""

from __future__ import annotations

import base64
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.shared.kafka import MAX_MESSAGE_BYTES, KafkaSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = PROJECT_ROOT / ".cache" / "kafka" / "libs"
LOG4J_CONFIG = PROJECT_ROOT / "scripts" / "kafka" / "log4j2.yaml"


class BrokerError(RuntimeError):
    """The local broker could not be set up or did not come up."""


def exit_with_parent() -> None:
    """Run in a child before exec: it gets SIGTERM when the process that started it dies.

    For ``replaypipe run``, whose services and broker live in sessions of their
    own (so Ctrl-C reaches only the supervisor): if the supervisor is killed,
    they stop too instead of holding the ports. Linux only; elsewhere a no-op.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SecureListeners:
    """Listeners a broker gets besides its plaintext one, for tests of TLS and SASL.

    ``sasl_ssl_port``: TLS, clients authenticate with SCRAM-SHA-512 as one of
    ``scram_users`` (name -> password; created when the storage is formatted).
    ``ssl_port``: mTLS, a client certificate signed by a CA of ``truststore_file``
    is required. The broker's key and certificate chain are in ``keystore_file``
    (PEM, unencrypted PKCS#8 key), which Kafka reads as it is: no JKS conversion.
    """

    sasl_ssl_port: int
    ssl_port: int
    keystore_file: Path
    truststore_file: Path
    scram_users: dict[str, str]

    def properties(self) -> list[str]:
        """The broker properties of these listeners (listener names ``SASL_SSL``, ``SSL``)."""
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.keystore_file}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.truststore_file}",
            "listener.name.ssl.ssl.client.auth=required",
        ]

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users."""
        args: list[str] = []
        for name, password in self.scram_users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return args


@dataclass
class LocalKafkaBroker:
    """One broker+controller process with its data under ``data_dir``.

    It always listens in plaintext on ``port`` (also the readiness probe's);
    ``secure`` adds TLS and SASL listeners (tests of the secured hops).
    """

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    partitions: int = 4
    # Stop when the process that started the broker dies (see exit_with_parent).
    stop_with_parent: bool = False
    secure: SecureListeners | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the plaintext listener, for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def kafka_settings(self) -> KafkaSettings:
        """Client settings for the plaintext listener."""
        return KafkaSettings(bootstrap_servers=self.bootstrap_servers)

    def _listeners(self) -> tuple[str, str, str]:
        """``listeners``, ``advertised.listeners`` and ``listener.security.protocol.map``."""
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        if self.secure is not None:
            advertised += [
                f"SASL_SSL://127.0.0.1:{self.secure.sasl_ssl_port}",
                f"SSL://127.0.0.1:{self.secure.ssl_port}",
            ]
            protocols += ["SASL_SSL:SASL_SSL", "SSL:SSL"]
        listeners = [*advertised, f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        return ",".join(listeners), ",".join(advertised), ",".join(protocols)

    def _properties(self) -> str:
        log_dir = self.data_dir / "logs"
        listeners, advertised, protocols = self._listeners()
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners={listeners}",
                f"advertised.listeners={advertised}",
                "controller.listener.names=CONTROLLER",
                f"listener.security.protocol.map={protocols}",
                # The broker talks to itself in plaintext on loopback; clients choose.
                "inter.broker.listener.name=PLAINTEXT",
                *(self.secure.properties() if self.secure is not None else []),
                f"log.dirs={log_dir}",
                # Single node: internal topics (offsets, transactions) with one replica.
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "min.insync.replicas=1",
                "group.initial.rebalance.delay.ms=0",
                f"num.partitions={self.partitions}",
                "auto.create.topics.enable=true",
                # rrweb full snapshots are big: room for 10 MiB messages.
                f"message.max.bytes={MAX_MESSAGE_BYTES}",
                f"replica.fetch.max.bytes={MAX_MESSAGE_BYTES}",
                "socket.request.max.bytes=104857600",
                "log.retention.hours=168",
                "log.segment.bytes=67108864",
                "",
            ]
        )

    def _java_cmd(self, main_class: str, *args: str) -> list[str]:
        if not KAFKA_LIBS.is_dir():
            raise BrokerError(f"{KAFKA_LIBS} is missing: run ./scripts/bootstrap.sh (make setup)")
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # faster start; the broker is not the bottleneck here
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            main_class,
            *args,
        ]

    def format_if_needed(self) -> None:
        """Write the config and format the storage once (kept across restarts)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cid = new_cluster_id()
        scram = self.secure.format_args() if self.secure is not None else []
        result = subprocess.run(
            self._java_cmd(
                "kafka.tools.StorageTool", "format", "-t", cid, "-c", str(config), *scram
            ),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"kafka storage format failed: {result.stderr.decode()[-2000:]}")

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker and wait until it accepts connections."""
        self.format_if_needed()
        log = open(self.data_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            self._java_cmd("kafka.Kafka", str(self.data_dir / "server.properties")),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent if self.stop_with_parent else None,
        )
        log.close()  # the broker has its own copy
        (self.data_dir / "broker.pid").write_text(str(self.process.pid))
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Block until the broker answers a metadata request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = (self.data_dir / "broker.log").read_bytes()[-3000:].decode(errors="replace")
                raise BrokerError(f"kafka broker exited with {self.process.returncode}: {tail}")
            if _metadata_ok(self.port):
                return
            time.sleep(0.3)
        raise BrokerError(f"kafka broker not ready on port {self.port} after {timeout:.0f}s")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def new_cluster_id() -> str:
    """A Kafka cluster id (base64url of a UUID) that does not start with '-'.

    The storage tool would read a leading '-' as an option, as Kafka's own
    ``Uuid.randomUuid`` also avoids.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _metadata_ok(port: int) -> bool:
    """True when the broker has finished starting (ApiVersions answered)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            # ApiVersionsRequest v0: size, api_key=18, version=0, correlation_id=1, client_id=""
            request = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
            request += (0).to_bytes(2, "big")
            sock.sendall(len(request).to_bytes(4, "big") + request)
            header = sock.recv(4)
            return len(header) == 4
    except OSError:
        return False
