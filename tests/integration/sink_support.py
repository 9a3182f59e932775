"""Helpers of the sink's integration tests: generated sessions, publishing, writers, queries.

Every test uses its own topic and site, so tests sharing the one embedded store
(chdb: one engine per process) do not see each other's rows.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import clickhouse_connect
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.shared.topics import session_key
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, run_migrations
from services.sink.writer import EventWriter

ADMIN = "admin-secret"

SHOP_TOKEN, BLOG_TOKEN = "rt_shop", "rt_blog"


def registry() -> SiteRegistry:
    import hashlib

    def site(site_id: str, token: str) -> SiteSettings:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return SiteSettings(site_id=site_id, retention_days=60, read_token_sha256=(digest,))

    return SiteRegistry([site("shop", SHOP_TOKEN), site("blog", BLOG_TOKEN)])


async def new_topic(broker: LocalKafkaBroker, partitions: int = 2) -> str:
    name = f"sinktest-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


def envelopes(site_id: str, sessions: int, seed: int) -> list[BatchEnvelope]:
    """Generated sessions as masked envelopes (one per batch)."""
    rng = random.Random(seed)
    # Recent times: older rows would be deleted by the retention TTL during the test.
    now_ms = int(time.time() * 1000)
    out = []
    for _ in range(sessions):
        start_ms = now_ms - rng.randint(60_000, 86_400_000)
        s = generate_session(rng, site_id=site_id, start_ms=start_ms)
        out.extend(s.envelopes(now_ms, user_agent="Mozilla/5.0 test", consent=True))
    return out


async def publish(broker: LocalKafkaBroker, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, acks="all", max_request_size=10_000_000
    )
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def publish_envelopes(
    broker: LocalKafkaBroker, topic: str, batch: list[BatchEnvelope]
) -> None:
    await publish(
        broker, topic, [(session_key(e.site_id, e.session_id), e.to_json()) for e in batch]
    )


def writer_for(
    broker: LocalKafkaBroker, store: ClickHouseStore, topic: str, **overrides: Any
) -> EventWriter:
    settings = SinkSettings(
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
        **{"batch_max_seconds": 0.2, **overrides},
    )
    return EventWriter(settings, store, registry(), topic=topic, dlq_topic=topic + ".dlq")


async def scalar(store: ClickHouseStore, sql: str, **params: Any) -> Any:
    return (await store.query(sql, parameters=params)).result_rows[0][0]


async def count_final(store: ClickHouseStore, site: str) -> int:
    """Events of a site as queries see them (``FINAL``: redelivered rows collapsed)."""
    return int(
        await scalar(store, "SELECT count() FROM events FINAL WHERE site_id = {s:String}", s=site)
    )


async def run_until(writer: EventWriter, done: Any, limit_s: float = 60) -> None:
    """Run the writer until ``await done()`` is true, then stop it gracefully."""
    await writer.start()
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + limit_s
        while not await done():
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "writer did not store the expected rows in time"
            await asyncio.sleep(0.2)
    finally:
        await writer.stop()
        await task
        await writer.close()


def expected_events(batch: list[BatchEnvelope]) -> int:
    return sum(len(e.events) for e in batch)


async def session_figures(store: ClickHouseStore, site: str) -> list[tuple[Any, ...]]:
    result = await store.query(
        "SELECT session_id, event_count, bytes, clicks, page_views, inputs, start_time, end_time "
        "FROM session_summaries WHERE site_id = {site:String} ORDER BY session_id",
        parameters={"site": site},
    )
    return [tuple(r) for r in result.result_rows]


async def insert_envelopes(
    store: ClickHouseStore, batch: list[BatchEnvelope], token: str, retention: int = 30
) -> None:
    """What the writer does with a flush: one columnar insert into incoming_batches."""
    from services.sink.rows import INCOMING_COLUMNS, incoming_row, read_header

    rows = [incoming_row(read_header(raw), raw, retention) for raw in (e.to_json() for e in batch)]
    columns = [list(c) for c in zip(*rows, strict=True)]
    await store.insert_columns("incoming_batches", columns, INCOMING_COLUMNS, token)


def metric(name: str, **labels: str) -> float:
    """A sample of the process's Prometheus registry (0 before it is first set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def committed_and_end(writer: EventWriter) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition: the group's committed offset and the log end offset."""
    consumer = writer.consumer
    assert consumer is not None
    tps = [
        TopicPartition(writer.topic, p)
        for p in sorted(consumer.partitions_for_topic(writer.topic) or ())
    ]
    ends = await consumer.end_offsets(tps)
    committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    return committed, {tp.partition: ends[tp] for tp in tps}


@contextmanager
def store_migrated_upto(store: ClickHouseStore, version: int | None) -> Iterator[ClickHouseStore]:
    """A new database of the session's engine with the migrations up to ``version`` (all
    with None), dropped afterwards (chdb: one engine path per process, so a fresh store is
    a fresh database of it)."""
    database = f"upto_{version or 'all'}_{uuid.uuid4().hex[:8]}"
    path = store.client.query(
        "SELECT value FROM system.server_settings WHERE name = 'path'"
    ).result_rows[0][0]
    store.client.command(f"CREATE DATABASE {database}")
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}", database=database)
    try:
        run_migrations(client, upto=version)
        yield ClickHouseStore(client)
    finally:
        client.close()
        store.client.command(f"DROP DATABASE {database} SYNC")
