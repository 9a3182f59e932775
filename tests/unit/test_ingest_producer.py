"""The gateway's producer wrapper without a broker: what it does when librdkafka fails."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from services.ingest.producer import AsyncProducer, PublishError

# Nothing listens on port 1: records stay queued, as while Kafka is down.
UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1", "enable.idempotence": True, "acks": "all"}


async def test_a_fatal_error_fails_the_queued_records_and_starts_a_new_producer() -> None:
    producer = AsyncProducer(UNREACHABLE)
    producer.start()
    try:
        failed = producer._producer
        waiting = producer.send("recordings.raw", b"{}", b"site:session")
        await asyncio.sleep(0.05)
        assert not waiting.done()

        fatal = KafkaError(KafkaError._FATAL, "test: producer fenced", fatal=True)
        producer._on_error(fatal, producer._generation)
        with pytest.raises(PublishError):  # the client is told to retry (503)
            await asyncio.wait_for(waiting, 5)

        assert producer._producer is not failed
        again = producer.send("recordings.raw", b"{}", b"site:session")
        assert not again.done()  # queued by the new producer
        again.cancel()
    finally:
        await producer.stop(0)


async def test_a_non_fatal_error_keeps_the_producer() -> None:
    producer = AsyncProducer(UNREACHABLE)
    producer.start()
    try:
        current = producer._producer
        producer._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN), producer._generation)
        await asyncio.sleep(0.01)
        assert producer._producer is current
    finally:
        await producer.stop(0)


async def test_a_record_over_the_size_limit_is_refused_at_once_as_too_large() -> None:
    producer = AsyncProducer({**UNREACHABLE, "message.max.bytes": 1000})
    producer.start()
    try:
        with pytest.raises(PublishError) as refused:
            producer.send("recordings.raw", b"x" * 5000, b"site:session")
        assert refused.value.too_large
    finally:
        await producer.stop(0)
