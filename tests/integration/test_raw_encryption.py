"""No readable secret at rest upstream of the masker, on the real stack and broker.

Secrets are typed through ingest, masked and stored; then the broker's log
segment files (decoded by Kafka's own DumpLogSegments, since lz4/zstd batches
hide clear text from a plain grep), the masker's changelog topic and the DLQ
are scanned for them. Also: a destroyed data key makes old raw data unreadable
(crypto-shredding), and a KEK rotation keeps waiting raw data readable.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.dev.demo import get, post_json
from services.dev.kafka_broker import KAFKA_LIBS, LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.dev.stack import LocalStack
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from services.shared.keyring import KEYS_TOPIC, RawEncryptionSettings, new_kek_file, rewrap_keys
from services.shared.raw_crypto import DataKey, seal, sealed_key_id
from tests.conftest import make_stack, start_broker

pytestmark = pytest.mark.integration

READ_TOKEN = "rt_demo_local"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """A broker of this module's own: its log directory holds only what these tests wrote."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-crypto"))
    yield broker
    broker.stop()


@dataclass
class Running:
    stack: LocalStack
    # How ingest's certificate is checked when it serves HTTPS itself (INGEST_TLS_*).
    ingest_tls: ssl.SSLContext | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack.kafka_port}"

    def post_session(self, seed: int) -> tuple[str, list[str], int]:
        """Post one generated session; returns its id, the secrets typed and the event count."""
        session = generate_session(random.Random(seed), start_ms=int(time.time() * 1000))
        for seq, batch in enumerate(session.batches):
            scheme = self.stack.scheme("ingest")
            status, body = post_json(
                f"{scheme}://127.0.0.1:{self.stack.ingest_port}/v1/recordings?key=pk_demo_local",
                {
                    "session_id": session.session_id,
                    "window_id": session.window_id,
                    "visitor_id": session.visitor_id,
                    "seq": seq,
                    "events": batch,
                },
                context=self.ingest_tls,
            )
            assert status == 202, body
        return session.session_id, session.secrets, len(session.events)

    def stored_events(self, session_id: str, expected: int, timeout: float = 90) -> bytes:
        url = f"http://127.0.0.1:{self.stack.sink_port}/v1/sites/demo/sessions/{session_id}/events"
        deadline = time.monotonic() + timeout
        body = b""
        while time.monotonic() < deadline:
            status, body = get(url, READ_TOKEN)
            if status == 200 and body.count(b"\n") >= expected:
                return body
            time.sleep(0.3)
        raise AssertionError(f"session {session_id} not stored in {timeout}s: {body[:200]!r}")


def run_stack(broker: LocalKafkaBroker, var_dir: Path, name: str, **env: str) -> LocalStack:
    stack = make_stack(broker, var_dir, name, {"RAW_ENCRYPTION": "required", **env})
    try:
        stack.start_services()
    except Exception:
        for log in sorted((var_dir / "logs").glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        stack.stop()
        raise
    return stack


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic``, read to its end."""

    async def read() -> list[tuple[bytes | None, bytes | None]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            for _ in range(100):  # without a group, every partition is assigned once known
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            parts = sorted(consumer.assignment())
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            out: list[tuple[bytes | None, bytes | None]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in parts]
                if all(pos >= ends[tp] for pos, tp in zip(positions, parts, strict=True)):
                    break
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend((r.key, r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def wait_for_dlq(bootstrap: str, key: bytes, timeout: float = 60) -> dict[str, object]:
    """The first DLQ pointer for raw records keyed ``key``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dlq_key, value in read_topic(bootstrap, topics.DLQ):
            if dlq_key == key:
                return dict(orjson.loads(value or b"{}"))
        time.sleep(0.5)
    raise AssertionError(f"no DLQ pointer for {key!r} in {timeout}s")


def produce(bootstrap: str, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.RAW, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def segment_files(broker: LocalKafkaBroker, topic_prefix: str) -> list[Path]:
    logs = broker.data_dir / "logs"
    return sorted(p for d in logs.glob(f"{topic_prefix}*") for p in d.glob("*.log"))


def decoded_segments(files: list[Path]) -> bytes:
    """The segments as Kafka's DumpLogSegments prints them (payloads decompressed)."""
    if not files:
        return b""
    result = subprocess.run(
        [
            "java",
            "-cp",
            f"{KAFKA_LIBS}/*",
            "kafka.tools.DumpLogSegments",
            "--deep-iteration",
            "--print-data-log",
            "--files",
            ",".join(str(f) for f in files),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return result.stdout


def scan(broker: LocalKafkaBroker, topic_prefix: str, secrets: list[str]) -> list[str]:
    """The secrets found in a topic's segment files, raw or decoded."""
    files = segment_files(broker, topic_prefix)
    assert files, f"no segment files for {topic_prefix}"
    haystack = b"".join(f.read_bytes() for f in files) + decoded_segments(files)
    return [s for s in secrets if s.encode() in haystack]


def test_the_scan_finds_a_secret_written_in_clear(broker: LocalKafkaBroker) -> None:
    # The control: the same scan does see clear text in a compressed raw segment.
    canary = f"canary-{os.urandom(6).hex()}"
    produce(broker.bootstrap_servers, b"control:s1", orjson.dumps({"typed": canary}))
    assert scan(broker, f"{topics.RAW}-", [canary]) == [canary]


def test_secrets_typed_through_the_stack_are_nowhere_upstream_of_the_masker(
    broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    stack = run_stack(broker, tmp_path, "sealed")
    try:
        running = Running(stack)
        session_id, secrets, count = running.post_session(seed=1401)
        body = running.stored_events(session_id, count)
        # A sealed value whose data key is nowhere: the masker DLQs a pointer to it.
        stray_value = orjson.dumps({"typed": secrets[0]})
        stray = seal(DataKey.create(int(time.time() * 1000)), b"demo:stray", stray_value)
        produce(running.bootstrap, b"demo:stray", stray)
        pointer = wait_for_dlq(running.bootstrap, b"demo:stray")
        with urlopen(f"http://127.0.0.1:{stack.masker_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        stack.stop()

    assert all(s.encode() not in body for s in secrets)
    assert pointer["reason"] == "unknown_data_key" and pointer["topic"] == topics.RAW
    assert (
        'replaypipe_masker_unreadable_raw_batches_total{reason="unknown_data_key"} 1.0' in metrics
    )
    logs = b"".join(p.read_bytes() for p in (tmp_path / "logs").glob("*.log"))
    kek = next((tmp_path / "keys").iterdir()).read_bytes().strip()
    assert kek not in logs and all(s.encode() not in logs for s in secrets)
    assert scan(broker, f"{topics.RAW}-", secrets) == []
    assert scan(broker, "masker-sealed-session-mask-state-changelog-", secrets) == []
    assert scan(broker, f"{topics.DLQ}-", secrets) == []
    assert scan(broker, f"{KEYS_TOPIC}-", secrets) == []
    mine = f"demo:{session_id}".encode()
    values = [v for k, v in read_topic(f"127.0.0.1:{broker.port}", topics.RAW) if k == mine]
    assert values and all(v is not None and v.startswith(b"RPS1") for v in values)


def test_data_keys_rotate_on_schedule_without_a_restart(
    broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    stack = run_stack(broker, tmp_path, "rotate", RAW_KEY_ROTATION_S="1")
    bootstrap = f"127.0.0.1:{broker.port}"
    try:
        running = Running(stack)
        first, _, first_count = running.post_session(seed=1405)
        time.sleep(2.5)
        second, _, second_count = running.post_session(seed=1406)
        running.stored_events(first, first_count)
        running.stored_events(second, second_count)
    finally:
        stack.stop()
    raw = read_topic(bootstrap, topics.RAW)
    key_ids = {
        session: {sealed_key_id(v) for k, v in raw if k == f"demo:{session}".encode() and v}
        for session in (first, second)
    }
    assert key_ids[first] and key_ids[second] and not key_ids[first] & key_ids[second]


def test_a_clear_value_is_refused_when_encryption_is_required(
    broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    stack = run_stack(broker, tmp_path, "strict")
    try:
        envelope = BatchEnvelope(
            site_id="demo",
            session_id="clear-1",
            window_id="w",
            visitor_id="v",
            seq=0,
            received_at_ms=int(time.time() * 1000),
            events=[{"type": 4, "timestamp": int(time.time() * 1000), "data": {"href": "x"}}],
        )
        produce(f"127.0.0.1:{broker.port}", b"demo:clear-1", envelope.to_json())
        pointer = wait_for_dlq(f"127.0.0.1:{broker.port}", b"demo:clear-1")
    finally:
        stack.stop()
    assert pointer["reason"] == "not_encrypted" and pointer["stage"] == "masker"


def test_raw_data_of_a_destroyed_data_key_cannot_be_read(
    broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    stack = run_stack(
        broker,
        tmp_path,
        "shred",
        RAW_KEY_ROTATION_S="1",
        RAW_KEY_DESTROY_AFTER_S="5",
        RAW_KEY_WAIT_S="2",
    )
    bootstrap = f"127.0.0.1:{broker.port}"
    try:
        stack.stop_service("masker")
        running = Running(stack)
        session_id, _, _ = running.post_session(seed=1402)
        mine = f"demo:{session_id}".encode()
        value = next(v for k, v in read_topic(bootstrap, topics.RAW) if k == mine)
        assert value is not None
        key_id = sealed_key_id(value).hex().encode()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = read_topic(bootstrap, KEYS_TOPIC)
            if (key_id, None) in keys:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the data key was not tombstoned on keys.raw")
        stack.start_service("masker")
        stack.wait_ready("masker", stack.masker_port)
        pointer = wait_for_dlq(bootstrap, mine, timeout=90)
    finally:
        stack.stop()
    assert pointer["reason"] == "key_destroyed" and pointer["topic"] == topics.RAW


def test_kek_rotation_keeps_waiting_raw_data_readable(
    broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    stack = run_stack(broker, tmp_path, "rekek")
    bootstrap = f"127.0.0.1:{broker.port}"
    kek_dir = tmp_path / "keys"
    old_kek = next(kek_dir.iterdir())
    try:
        stack.stop_service("masker")
        running = Running(stack)
        waiting_id, _, waiting_count = running.post_session(seed=1403)
        # The runbook: a new KEK next to the old, every process restarted with both,
        # the data keys re-wrapped, then the old KEK removed and processes restarted.
        time.sleep(1.1)  # KEK file names carry the second
        new_kek = new_kek_file(kek_dir)
        settings = RawEncryptionSettings(mode="required", kek_dir=str(kek_dir))
        summary = asyncio.run(rewrap_keys(settings, broker.kafka_settings))
        assert summary.rewrapped >= 1  # other tests' keys (their own KEKs) are listed, untouched
        old_kek.unlink()
        stack.stop_service("ingest")
        stack.start_service("ingest")
        stack.start_service("masker")
        stack.wait_ready("ingest", stack.ingest_port)
        stack.wait_ready("masker", stack.masker_port)
        fresh_id, _, fresh_count = running.post_session(seed=1404)
        running.stored_events(waiting_id, waiting_count)
        running.stored_events(fresh_id, fresh_count)
    finally:
        stack.stop()
    latest = dict(read_topic(bootstrap, KEYS_TOPIC))
    ours = [orjson.loads(v) for v in latest.values() if v is not None]
    ours = [doc for doc in ours if doc["kek"] in (old_kek.name, new_kek.name)]
    assert ours and {doc["kek"] for doc in ours} == {new_kek.name}
