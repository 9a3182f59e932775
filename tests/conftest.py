"""Shared fixtures: a throwaway real Kafka broker and a running pipeline stack.

The broker is started once per test run (real Apache Kafka, KRaft mode, from the
jars ``scripts/bootstrap.sh`` resolved) and stopped at the end; tests that need
to stop or kill a broker start their own with :func:`start_broker`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.dev.kafka_broker import LocalKafkaBroker, SecureListeners, free_port
from services.dev.stack import LocalStack
from services.shared.kafka import ensure_topics

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def start_broker(
    data_dir: Path, partitions: int = 4, *, secure: SecureListeners | None = None
) -> LocalKafkaBroker:
    """Start a real broker on free ports and create the pipeline topics.

    ``secure`` adds TLS and SASL listeners besides the plaintext one.
    """
    return start_broker_on(data_dir, free_port(), partitions=partitions, secure=secure)


def start_broker_on(
    data_dir: Path, port: int, partitions: int = 4, *, secure: SecureListeners | None = None
) -> LocalKafkaBroker:
    """Start a real broker on ``port`` (clients may already be waiting for it) with the topics."""
    broker = LocalKafkaBroker(data_dir, port, free_port(), partitions=partitions, secure=secure)
    broker.start()
    asyncio.run(ensure_topics(broker.kafka_settings))
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """The test run's throwaway broker."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


def make_stack(
    broker: LocalKafkaBroker, var_dir: Path, name: str, extra_env: dict[str, str] | None = None
) -> LocalStack:
    """A pipeline stack (ingest, masker, sink) on ``broker`` with its own ports and store.

    ``name`` makes consumer groups and faust app ids unique, so stacks sharing the
    broker do not steal each other's partitions.
    """
    env = {
        "SINK_GROUP_ID": f"sink-{name}",
        "MASKER_APP_ID": f"masker-{name}",
        "SINK_ADMIN_TOKEN": "admin-test-token",
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    return LocalStack(
        var_dir=var_dir,
        kafka_port=broker.port,
        ingest_port=free_port(),
        masker_port=free_port(),
        sink_port=free_port(),
        extra_env=env,
    )


@pytest.fixture(scope="session")
def pipeline(
    kafka_broker: LocalKafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The three services running against the test broker and an embedded ClickHouse."""
    var_dir = tmp_path_factory.mktemp("stack")
    stack = make_stack(kafka_broker, var_dir, "shared")
    try:
        stack.start_services()
    except Exception:
        _dump_logs(var_dir)
        stack.stop()
        raise
    yield stack
    stack.stop()
    if os.environ.get("REPLAYPIPE_KEEP_TEST_LOGS"):
        shutil.copytree(var_dir / "logs", PROJECT_ROOT / "test-output" / "logs", dirs_exist_ok=True)


def _dump_logs(var_dir: Path) -> None:
    """Print the tail of every service log of a stack (for a failed start)."""
    for log in sorted((var_dir / "logs").glob("*.log")):
        print(f"==== {log.name}\n{log.read_text()[-4000:]}")
