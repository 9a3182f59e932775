"""Every Kafka hop over TLS with authentication, on a real broker with secured listeners.

The broker gets a SASL_SSL listener (SCRAM-SHA-512 users) and an mTLS listener
(client certificate required) besides its plaintext one, with certificates this
module makes with ``cryptography``. The pipeline (ingest's librdkafka producer,
the masker's faust app, the sink's consumers, the key and settings feeds) is
pointed at the SASL_SSL listener only: the broker advertises that listener's
address to its clients, so no connection of theirs can fall back to plaintext.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import Producer

from services.dev.kafka_broker import PROJECT_ROOT, LocalKafkaBroker, SecureListeners, free_port
from services.shared.kafka import KafkaSettings
from services.shared.kafka_security import aiokafka_client_kwargs, librdkafka_config
from tests.conftest import make_stack, start_broker
from tests.integration.test_raw_encryption import Running, run_stack
from tests.tls_certs import CertificateAuthority, Identity, new_ca

pytestmark = pytest.mark.integration

PIPELINE_USER = "replaypipe-pipeline"


@dataclass
class SecureKafka:
    """The broker with secured listeners, its CA, and files holding the users' passwords."""

    broker: LocalKafkaBroker
    listeners: SecureListeners
    ca: CertificateAuthority
    password_files: dict[str, Path]

    def sasl_env(self, user: str, password_file: Path | None = None) -> dict[str, str]:
        """The ``KAFKA_*`` variables of a service that connects as ``user`` over SASL_SSL."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.listeners.sasl_ssl_port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(password_file or self.password_files[user]),
            "KAFKA_SSL_CA_FILE": str(self.ca.cert_file),
        }

    def mtls(self, client: Identity | None) -> KafkaSettings:
        """Settings for the mTLS listener, presenting ``client`` (or no certificate)."""
        return KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{self.listeners.ssl_port}",
            security_protocol="SSL",
            ssl_ca_file=str(self.ca.cert_file),
            ssl_cert_file=str(client.cert_file) if client else "",
            ssl_key_file=str(client.key_file) if client else "",
        )


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A broker of this module's own with SASL_SSL and mTLS listeners."""
    base = tmp_path_factory.mktemp("kafka-tls")
    ca = new_ca(base / "certs")
    keystore = ca.issue("kafka-broker").write_keystore(base / "certs" / "broker-keystore.pem")
    passwords = {PIPELINE_USER: secrets.token_hex(16), "replaypipe-cli": secrets.token_hex(16)}
    password_files = {}
    for user, password in passwords.items():
        password_files[user] = base / f"{user}.password"
        password_files[user].write_text(password + "\n")
    listeners = SecureListeners(free_port(), free_port(), keystore, ca.cert_file, passwords)
    broker = start_broker(base / "kafka", secure=listeners)
    yield SecureKafka(broker, listeners, ca, password_files)
    broker.stop()


def test_a_session_goes_through_every_hop_over_tls_and_lands_in_clickhouse(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    # Browser -> ingest over ingest's own HTTPS; every Kafka hop over SASL_SSL.
    ingest_cert = secure_kafka.ca.issue("replaypipe-ingest")
    env = {
        **secure_kafka.sasl_env(PIPELINE_USER),
        "INGEST_TLS_CERT_FILE": str(ingest_cert.cert_file),
        "INGEST_TLS_KEY_FILE": str(ingest_cert.key_file),
    }
    stack = run_stack(secure_kafka.broker, tmp_path, "tls", **env)
    try:
        browser = ssl.create_default_context(cafile=str(secure_kafka.ca.cert_file))
        running = Running(stack, ingest_tls=browser)
        session_id, secrets_typed, count = running.post_session(seed=1401)
        body = running.stored_events(session_id, count)
        assert all(secret.encode() not in body for secret in secrets_typed)
    finally:
        stack.stop()


def test_a_wrong_password_is_refused_and_ingest_says_so_without_the_password(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-4711\n")
    stack = make_stack(
        secure_kafka.broker,
        tmp_path,
        "tls-wrong",
        secure_kafka.sasl_env(PIPELINE_USER, password_file=wrong),
    )
    stack.start_service("ingest")
    try:
        log = stack.log_file("ingest")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "kafka refused the credentials" not in _text(log):
            time.sleep(0.5)
        assert "kafka refused the credentials" in _text(log)
        assert _readyz(stack.ingest_port) == 503  # never ready with refused credentials
        assert "not-the-password-4711" not in _text(log)
    finally:
        stack.stop_services()


def test_the_cli_with_a_wrong_password_fails_naming_the_authentication_failure(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-0815\n")
    result = replaypipe_topics(secure_kafka.sasl_env("replaypipe-cli", password_file=wrong))
    assert result.returncode != 0
    assert "SaslAuthenticationFailed" in result.stderr
    assert "invalid credentials" in result.stderr
    assert "not-the-password-0815" not in result.stdout + result.stderr


def test_a_missing_password_file_stops_a_service_at_startup_naming_the_variable(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    absent = tmp_path / "absent"
    result = replaypipe_topics(secure_kafka.sasl_env("replaypipe-cli", password_file=absent))
    assert result.returncode == 2
    assert "KAFKA_SASL_PASSWORD_FILE: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_mtls_clients_with_a_certificate_of_the_ca_produce_and_consume(
    secure_kafka: SecureKafka,
) -> None:
    client = secure_kafka.ca.issue("replaypipe-mtls-client", client=True)
    kafka = secure_kafka.mtls(client)
    topic = f"test.mtls.{secrets.token_hex(4)}"

    async def round_trip() -> bytes | None:
        producer = AIOKafkaProducer(**aiokafka_client_kwargs(kafka))
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"over mTLS")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, **aiokafka_client_kwargs(kafka), group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 30)
            value: bytes | None = record.value
            return value
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == b"over mTLS"
    # librdkafka (ingest's producer) through the same listener.
    metadata = Producer(librdkafka_config(kafka)).list_topics(timeout=30)
    assert topic in metadata.topics


def test_the_mtls_listener_refuses_a_client_without_a_certificate(
    secure_kafka: SecureKafka,
) -> None:
    async def connect() -> None:
        producer = AIOKafkaProducer(
            **aiokafka_client_kwargs(secure_kafka.mtls(None)), request_timeout_ms=5000
        )
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())


def replaypipe_topics(kafka_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``replaypipe topics`` run with ``kafka_env`` (the CLI is a Kafka client too)."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "topics"],
        env={**os.environ, **kafka_env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _readyz(port: int, timeout_s: float = 30) -> int:
    """The status ``/readyz`` answers, once the service listens."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                return int(response.status)
        except HTTPError as exc:
            return exc.code
        except URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
