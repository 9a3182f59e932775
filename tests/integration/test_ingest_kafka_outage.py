"""Kafka goes away and comes back: 503 meanwhile, and no accepted batch lost or doubled."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from services.dev.kafka_broker import LocalKafkaBroker, free_port
from services.ingest.app import start_gateway
from services.ingest.settings import IngestSettings
from services.shared import topics
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from tests.conftest import start_broker

pytestmark = pytest.mark.integration

SITE = SiteSettings(
    site_id="outage", public_keys=("pk_outage",), rate_limit_per_second=1e6, rate_limit_burst=10**6
)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """A broker of this module's own, so stopping it disturbs no other test."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-outage"))
    yield broker
    broker.stop()


def batch(session_id: str, seq: int) -> bytes:
    return orjson.dumps(
        {
            "session_id": session_id,
            "seq": seq,
            "events": [{"type": 3, "timestamp": int(time.time() * 1000), "data": {"source": 1}}],
        }
    )


async def count_published(broker: LocalKafkaBroker, session_id: str) -> Counter[int]:
    """How often each seq of ``session_id`` is on recordings.raw (read to the end)."""
    consumer = AIOKafkaConsumer(
        topics.RAW,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: Counter[int] = Counter()
    try:
        end = await consumer.end_offsets(list(consumer.assignment()))
        for tp, end_offset in end.items():
            while await consumer.position(tp) < end_offset:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    for record in records:
                        doc = orjson.loads(record.value)
                        if doc["session_id"] == session_id:
                            seen[doc["seq"]] += 1
    finally:
        await consumer.stop()
    return seen


def queued_records() -> float:
    """The gateway's ``replaypipe_ingest_producer_queued_records`` gauge (it runs in-process)."""
    value = REGISTRY.get_sample_value("replaypipe_ingest_producer_queued_records")
    assert value is not None, "gauge replaypipe_ingest_producer_queued_records not exported"
    return value


async def test_kafka_down_answers_503_and_every_202_batch_is_stored_exactly_once(
    own_broker: LocalKafkaBroker,
) -> None:
    settings = IngestSettings(
        host="127.0.0.1",
        port=free_port(),
        publish_timeout_s=3.0,
        retry_after_s=2,
        kafka=KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers),
    )
    runner = await start_gateway(settings, SiteRegistry([SITE]))
    url = f"http://127.0.0.1:{settings.port}"
    session = uuid.uuid4().hex
    accepted: list[int] = []
    refused: list[int] = []
    seq = 0

    async def post(http: aiohttp.ClientSession) -> tuple[int, dict[str, str], bytes]:
        nonlocal seq
        seq += 1
        async with http.post(
            f"{url}/v1/recordings?key=pk_outage",
            data=batch(session, seq),
            headers={"Content-Type": "application/json"},
        ) as response:
            (accepted if response.status == 202 else refused).append(seq)
            return response.status, dict(response.headers), await response.read()

    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                assert (await post(http))[0] == 202

            await asyncio.to_thread(own_broker.stop)

            down = [await post(http) for _ in range(3)]
            assert [status for status, _, _ in down] == [503, 503, 503]
            for _, headers, body in down:
                assert orjson.loads(body)["error"] == "kafka_unavailable"
                assert headers["Retry-After"] == "2"
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
            # The refused batches wait in the producer (they may still land): visible.
            assert queued_records() >= 3

            await asyncio.to_thread(own_broker.start)

            # Clients retry until the gateway takes batches again, then keep sending.
            deadline = time.monotonic() + 90
            while (await post(http))[0] != 202:
                assert time.monotonic() < deadline, "gateway did not recover after Kafka restarted"
                await asyncio.sleep(0.5)
            for _ in range(10):
                assert (await post(http))[0] == 202
            deadline = time.monotonic() + 30
            while queued_records() > 0:
                assert time.monotonic() < deadline, "the producer kept records after recovery"
                await asyncio.sleep(0.5)
    finally:
        await runner.cleanup()  # flushes anything still queued

    seen = await count_published(own_broker, session)
    assert {s: seen[s] for s in accepted} == dict.fromkeys(accepted, 1)
    # A 503'd batch may still land (it was queued when the client gave up); never twice.
    assert all(seen[s] <= 1 for s in refused)
