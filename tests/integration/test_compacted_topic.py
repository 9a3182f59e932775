"""The one follower of the compacted topics (``sites.config``, ``keys.raw``, ``console.state``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.compacted_topic import CompactedTopicFollower, follow_compacted_topic

pytestmark = pytest.mark.integration


async def _publish(
    bootstrap_servers: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_records_before_the_start_are_applied_before_caught_up_is_called(
    kafka_broker: LocalKafkaBroker,
) -> None:
    topic = f"test.compacted.{uuid.uuid4().hex}"  # auto-created: several partitions
    records: list[tuple[bytes | None, bytes | None]] = [
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(20)
    ]
    await _publish(kafka_broker.bootstrap_servers, topic, [*records, (b"k3", None)])
    applied: dict[bytes, bytes | None] = {}
    seen_when_caught_up: list[int] = []
    stop = asyncio.Event()

    def caught_up() -> None:
        seen_when_caught_up.append(len(applied))
        stop.set()

    await asyncio.wait_for(
        follow_compacted_topic(
            topic,
            kafka_broker.kafka_settings,
            lambda key, value, _offset: applied.__setitem__(key, value),
            stop=stop,
            on_caught_up=caught_up,
        ),
        60,
    )

    assert seen_when_caught_up == [20]
    assert applied[b"k3"] is None  # the tombstone, after the record it deletes
    assert applied[b"k4"] == b"v4"


async def test_records_without_a_key_are_skipped(kafka_broker: LocalKafkaBroker) -> None:
    topic = f"test.compacted.{uuid.uuid4().hex}"
    await _publish(kafka_broker.bootstrap_servers, topic, [(None, b"stray"), (b"site", b"x")])
    applied: list[bytes] = []
    stop = asyncio.Event()

    await asyncio.wait_for(
        follow_compacted_topic(
            topic,
            kafka_broker.kafka_settings,
            lambda key, _value, _offset: applied.append(key),
            stop=stop,
            on_caught_up=stop.set,
        ),
        60,
    )

    assert applied == [b"site"]


async def test_a_topic_created_after_the_start_is_read_once_it_exists(
    kafka_broker: LocalKafkaBroker,
) -> None:
    topic = f"test.compacted.{uuid.uuid4().hex}"
    applied: list[bytes] = []
    arrived = asyncio.Event()
    stop = asyncio.Event()

    def apply(key: bytes, _value: bytes | None, _offset: int) -> None:
        applied.append(key)
        arrived.set()

    follower = asyncio.create_task(
        follow_compacted_topic(
            topic,
            kafka_broker.kafka_settings,
            apply,
            stop=stop,
            first_retry_s=0.2,
            max_retry_s=0.5,
        )
    )
    try:
        await asyncio.sleep(1.0)
        await _publish(kafka_broker.bootstrap_servers, topic, [(b"late", b"x")])
        await asyncio.wait_for(arrived.wait(), 30)
        assert applied == [b"late"]
    finally:
        stop.set()
        await asyncio.wait_for(follower, 10)


async def test_has_read_to_tells_whether_records_published_before_now_are_applied(
    kafka_broker: LocalKafkaBroker,
) -> None:
    topic = f"test.compacted.{uuid.uuid4().hex}"
    await _publish(kafka_broker.bootstrap_servers, topic, [(b"a", b"1")])
    follower = CompactedTopicFollower(topic, kafka_broker.kafka_settings)
    applied: list[bytes] = []
    task = asyncio.create_task(follower.run(lambda key, _v, _o: applied.append(key)))
    try:
        async with asyncio.timeout(30):
            ends = None
            while ends is None:
                ends = await follower.end_offsets()
                await follower.wait_for_progress(1.0)
            while not follower.has_read_to(ends):
                await follower.wait_for_progress(1.0)
        assert applied == [b"a"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
