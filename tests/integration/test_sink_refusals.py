"""The writer tells a data-caused insert failure from an outage (issue 12).

A message that ClickHouse refuses because of what it is — here, one too costly
for the server's per-query memory limit even alone — must not stall the
partition: the writer splits the insert, stores every other message, and sends
a pointer to that one message to the DLQ with a counted reason. (An outage is
retried instead: tests/integration/test_sink_writer.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.envelope import BatchEnvelope
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import (
    committed_and_end,
    count_final,
    envelopes,
    expected_events,
    metric,
    new_topic,
    publish_envelopes,
    scalar,
    writer_for,
)

pytestmark = pytest.mark.integration

# Batches of up to 2,000 ordinary events need a few MiB here; a 20,000-click message
# alone needs ~90 MiB.
MEMORY_LIMIT = 48 * 1024 * 1024


@contextlib.asynccontextmanager
async def per_query_memory_limit(store: ClickHouseStore, limit: int) -> AsyncIterator[None]:
    """Every query of the store's client runs under ``max_memory_usage`` (a server profile's)."""
    store.client.set_client_setting("max_memory_usage", str(limit))
    try:
        yield
    finally:
        store.client.set_client_setting("max_memory_usage", "0")


def click_heavy(site_id: str, clicks: int) -> BatchEnvelope:
    now_ms = int(time.time() * 1000) - 60_000
    return BatchEnvelope(
        site_id=site_id,
        session_id=f"heavy-{uuid.uuid4().hex[:8]}",
        window_id="w1",
        visitor_id="v1",
        seq=1,
        received_at_ms=now_ms,
        events=[
            {
                "type": 3,
                "timestamp": now_ms + 20 * i,
                "data": {"source": 2, "type": 2, "id": 5, "x": i % 700, "y": 50},
            }
            for i in range(clicks)
        ],
    )


async def dlq_records(broker: LocalKafkaBroker, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(messages)
        await asyncio.sleep(0.5)  # and nothing more arrives
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(messages)
        return records
    finally:
        await consumer.stop()


async def test_a_message_over_the_memory_limit_goes_to_the_dlq_as_a_pointer_and_the_rest_is_stored(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "over-limit"
    topic = await new_topic(kafka_broker, partitions=1)
    good = envelopes(site, sessions=4, seed=31)
    heavy = click_heavy(site, clicks=20_000)
    half = len(good) // 2
    await publish_envelopes(kafka_broker, topic, [*good[:half], heavy, *good[half:]])
    total = expected_events(good)
    over_limit_before = metric("replaypipe_sink_dlq_total", reason="over_limit")
    refusals_before = metric("replaypipe_sink_insert_refusals_total", reason="over_limit")
    retries_before = metric("replaypipe_sink_insert_retries_total")
    writer = writer_for(kafka_broker, store, topic, batch_max_rows=2000, batch_max_seconds=0.5)
    async with per_query_memory_limit(store, MEMORY_LIMIT):
        await writer.start()
        task = asyncio.create_task(writer.run())
        try:
            deadline = time.monotonic() + 60
            while await count_final(store, site) < total:
                assert not task.done(), task.exception()
                assert time.monotonic() < deadline, "the messages around the heavy one were stored"
                assert not writer.paused, "a data-caused failure was treated as an outage"
                await asyncio.sleep(0.2)
            while (offsets := await committed_and_end(writer))[0] != offsets[1]:
                assert time.monotonic() < deadline, "offsets were not committed past the heavy one"
                await asyncio.sleep(0.2)
        finally:
            await writer.stop()
            await task
            await writer.close()

    [record] = await dlq_records(kafka_broker, topic + ".dlq", expected=1)
    headers = dict(record.headers)
    assert orjson.loads(record.value) == {
        "stage": "sink",
        "topic": topic,
        "partition": 0,
        "offset": half,
        "reason": "over_limit",
    }
    assert headers["reason"] == b"over_limit" and headers["source"] == f"{topic}/0/{half}".encode()
    assert b"MEMORY_LIMIT_EXCEEDED" in headers["detail"]
    assert metric("replaypipe_sink_dlq_total", reason="over_limit") == over_limit_before + 1
    refusals = metric("replaypipe_sink_insert_refusals_total", reason="over_limit")
    assert refusals > refusals_before
    assert metric("replaypipe_sink_insert_retries_total") == retries_before  # never an outage
    assert await count_final(store, site) == total
    heavy_rows = await scalar(
        store, "SELECT count() FROM events WHERE session_id = {s:String}", s=heavy.session_id
    )
    assert heavy_rows == 0
