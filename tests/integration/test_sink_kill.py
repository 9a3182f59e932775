"""The sink process SIGKILLed while it writes, then restarted: every event exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.dev.demo import get, post_json
from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from tests.conftest import make_stack

pytestmark = pytest.mark.integration

ADMIN = "admin-test-token"  # make_stack's SINK_ADMIN_TOKEN


def masked_envelopes(sessions: int, tag: str) -> list[BatchEnvelope]:
    rng = random.Random(42)
    now_ms = int(time.time() * 1000)
    out = []
    for n in range(sessions):
        s = generate_session(rng, start_ms=now_ms - 3_600_000 + n * 1000, batch_size=10)
        for seq, batch in enumerate(s.batches):
            out.append(
                BatchEnvelope(
                    site_id="demo",
                    session_id=f"{tag}-{n}",
                    window_id=s.window_id,
                    visitor_id=s.visitor_id,
                    seq=seq,
                    received_at_ms=now_ms,
                    events=batch,
                )
            )
    return out


async def produce(bootstrap: str, envelopes: list[BatchEnvelope], pause_every: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, e in enumerate(envelopes):
            await producer.send(
                topics.MASKED, e.to_json(), key=topics.session_key("demo", e.session_id)
            )
            if i % pause_every == 0:
                await producer.flush()
                await asyncio.sleep(0.05)  # spread over several inserts
        await producer.flush()
    finally:
        await producer.stop()


def stored_events(port: int, tag: str) -> int:
    status, body = post_json(
        f"http://127.0.0.1:{port}/v1/sql",
        {"sql": f"SELECT count() FROM events WHERE session_id LIKE '{tag}-%'"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    return int(orjson.loads(body)["rows"][0][0]) if status == 200 else -1


def test_sink_killed_mid_batch_and_restarted_stores_every_event_exactly_once(
    kafka_broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    tag = "kill" + uuid.uuid4().hex[:6]
    envelopes = masked_envelopes(sessions=40, tag=tag)
    total = sum(len(e.events) for e in envelopes)
    stack = make_stack(
        kafka_broker,
        tmp_path,
        f"kill-{tag}",
        {"SINK_BATCH_MAX_ROWS": "1000", "SINK_BATCH_MAX_SECONDS": "0.3"},
    )
    stack.start_service("sink")
    try:
        stack.wait_ready("sink", stack.sink_port)
        asyncio.run(produce(kafka_broker.bootstrap_servers, envelopes[: len(envelopes) // 2], 20))
        deadline = time.monotonic() + 60
        while stored_events(stack.sink_port, tag) <= 0:
            assert time.monotonic() < deadline, "sink stored nothing"
            time.sleep(0.1)
        # Killed while consuming and inserting: some rows may be stored but not committed.
        stack.stop_service("sink", signal.SIGKILL)
        asyncio.run(produce(kafka_broker.bootstrap_servers, envelopes[len(envelopes) // 2 :], 20))
        stack.start_service("sink")
        stack.wait_ready("sink", stack.sink_port)
        while stored_events(stack.sink_port, tag) < total:
            assert time.monotonic() < deadline + 60, "sink did not catch up after the restart"
            time.sleep(0.3)

        port = stack.sink_port
        for n in range(40):
            expected = [
                e for env in envelopes if env.session_id == f"{tag}-{n}" for e in env.events
            ]
            status, body = get(
                f"http://127.0.0.1:{port}/v1/sites/demo/sessions/{tag}-{n}/events", ADMIN
            )
            assert status == 200
            assert [orjson.loads(line) for line in body.splitlines()] == sorted(
                expected, key=lambda e: e["timestamp"]
            )
        status, body = post_json(
            f"http://127.0.0.1:{port}/v1/sql",
            {
                "sql": "SELECT count(), sum(event_count) FROM session_summaries "
                f"WHERE site_id = 'demo' AND session_id LIKE '{tag}-%'"
            },
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert orjson.loads(body)["rows"] == [[40, total]]
    finally:
        stack.stop()
