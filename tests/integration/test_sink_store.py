"""The sink writer and read API on the real broker and the real embedded ClickHouse.

The writer runs in this process against one embedded store (chdb: one engine
per process), each test on its own topic and site so tests do not see each
other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.shared.topics import session_key
from services.sink.read_api import make_read_app
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, open_client, run_migrations
from services.sink.writer import EventWriter

pytestmark = pytest.mark.integration

ADMIN = "admin-secret"
SHOP_TOKEN, BLOG_TOKEN = "rt_shop", "rt_blog"
RAGE_SESSION = web.AppKey("rage_session", str)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    path: Path = tmp_path_factory.mktemp("sink-store")
    client = open_client(f"chdb://{path}")
    run_migrations(client)
    yield ClickHouseStore(client)
    client.close()


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


def sample(name: str) -> float:
    """A metric's current value, read through the registry (0 before its first use)."""
    return REGISTRY.get_sample_value(name) or 0.0


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


async def test_redelivery_with_different_batch_cuts_leaves_every_event_once(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "redeliver"
    batch = envelopes(site, sessions=6, seed=1)
    topic = await new_topic(kafka_broker)
    await publish_envelopes(kafka_broker, topic, batch)
    total = expected_events(batch)

    async def all_stored() -> bool:
        return bool(await count_final(store, site) == total)

    await run_until(writer_for(kafka_broker, store, topic, batch_max_rows=1000), all_stored)
    first = await session_figures(store, site)
    # A second consumer group re-reads everything, cut into different inserts (as after
    # a crash between insert and commit): the deduplication tokens differ, the keys do not.
    await run_until(writer_for(kafka_broker, store, topic, batch_max_rows=137), all_stored)
    await asyncio.sleep(0.5)

    assert await count_final(store, site) == total
    assert await session_figures(store, site) == first
    assert len(first) == 6 and sum(row[1] for row in first) == total


async def insert_envelopes(
    store: ClickHouseStore, batch: list[BatchEnvelope], token: str, retention: int = 30
) -> None:
    """What the writer does with a flush: one columnar insert into incoming_batches."""
    from services.sink.rows import INCOMING_COLUMNS, incoming_row, read_header

    rows = [incoming_row(read_header(raw), raw, retention) for raw in (e.to_json() for e in batch)]
    columns = [list(c) for c in zip(*rows, strict=True)]
    await store.insert_columns("incoming_batches", columns, INCOMING_COLUMNS, token)


async def test_same_batch_retried_with_its_token_is_not_stored_twice(
    store: ClickHouseStore,
) -> None:
    batch = envelopes("token", sessions=1, seed=2)
    for _ in range(2):
        await insert_envelopes(store, batch, "same-token")
    # No FINAL: the retried block never reached the events table.
    assert await scalar(
        store, "SELECT count() FROM events WHERE site_id = 'token'"
    ) == expected_events(batch)


async def test_event_rows_keep_batch_sequence_index_and_json(store: ClickHouseStore) -> None:
    batch = envelopes("rows", sessions=1, seed=12)[:2]
    await insert_envelopes(store, batch, uuid.uuid4().hex, retention=90)
    result = await store.query(
        "SELECT seq, idx, type, source, data, size, retention_days, toUnixTimestamp64Milli(ts) "
        "FROM events WHERE site_id = 'rows' ORDER BY seq, idx"
    )
    expected = [(e.seq, i, event) for e in batch for i, event in enumerate(e.events)]
    assert len(result.result_rows) == len(expected)
    for (seq, idx, etype, source, data, size, retention, ts), (e_seq, e_idx, event) in zip(
        result.result_rows, expected, strict=True
    ):
        assert (seq, idx, retention, ts) == (e_seq, e_idx, 90, event["timestamp"])
        assert orjson.loads(data) == event and size == len(data.encode())
        assert etype == event["type"]
        assert source == (event["data"]["source"] if event["type"] == 3 else -1)


def click(ms: int, x: int, y: int) -> dict[str, Any]:
    return {"type": 3, "timestamp": ms, "data": {"source": 2, "type": 2, "id": 5, "x": x, "y": y}}


async def batch_summary(store: ClickHouseStore, events: list[dict[str, Any]], **fields: Any) -> Any:
    """The session summary ClickHouse computes for one batch of ``events`` (times from now)."""
    now_ms = int(time.time() * 1000) - 60_000
    session = uuid.uuid4().hex[:12]
    shifted = [{**e, "timestamp": e["timestamp"] + now_ms} for e in events]
    envelope = BatchEnvelope(
        site_id="summary",
        session_id=session,
        window_id="w1",
        visitor_id="v1",
        seq=3,
        received_at_ms=now_ms,
        events=shifted,
        **fields,
    )
    await insert_envelopes(store, [envelope], uuid.uuid4().hex)
    result = await store.query(
        "SELECT * FROM session_summaries WHERE site_id = 'summary' AND session_id = {s:String}",
        parameters={"s": session},
    )
    return dict(zip(result.column_names, result.result_rows[0], strict=True)), now_ms


async def test_three_quick_clicks_in_one_spot_are_one_rage_click(store: ClickHouseStore) -> None:
    summary, _ = await batch_summary(
        store, [click(0, 10, 10), click(200, 12, 11), click(400, 9, 10)]
    )
    assert (summary["clicks"], summary["rage_clicks"]) == (3, 1)


async def test_clicks_spread_in_space_or_time_are_not_rage_clicks(store: ClickHouseStore) -> None:
    spread = [click(0, 10, 10), click(200, 300, 10), click(400, 600, 10)]
    slow = [click(0, 10, 10), click(900, 10, 10), click(1800, 10, 10)]
    for clicks in (spread, slow):
        summary, _ = await batch_summary(store, clicks)
        assert (summary["clicks"], summary["rage_clicks"]) == (3, 0)


async def test_a_click_counts_towards_one_rage_burst_only(store: ClickHouseStore) -> None:
    # Seven clicks in one spot within 1 s: bursts 1-2-3... greedily -> one burst of 7.
    # Then a failed start, and a burst starting at the second click of the rest.
    clicks = [click(10 * i, 5, 5) for i in range(7)]
    clicks += [click(5000, 500, 500), click(5100, 100, 100), click(5200, 100, 100)]
    clicks += [click(5300, 100, 100)]
    summary, _ = await batch_summary(store, clicks)
    assert (summary["clicks"], summary["rage_clicks"]) == (11, 2)


async def test_summary_counts_page_views_clicks_inputs_errors_and_viewport(
    store: ClickHouseStore,
) -> None:
    events = [
        {
            "type": 4,
            "timestamp": 1000,
            "data": {"href": "https://a/x", "width": 800, "height": 600},
        },
        click(2000, 5, 5),
        click(2100, 6, 5),
        click(2200, 5, 6),
        {"type": 3, "timestamp": 3000, "data": {"source": 5, "id": 9, "text": "***"}},
        {"type": 3, "timestamp": 3500, "data": {"source": 4, "width": 1024, "height": 700}},
        {
            "type": 6,
            "timestamp": 4000,
            "data": {"plugin": "rrweb/console@1", "payload": {"level": "error"}},
        },
        {"type": 3, "timestamp": 4500, "data": {"source": 11, "level": "error"}},
        {"type": 4, "timestamp": 5000, "data": {"href": "https://a/y"}},
    ]
    summary, now_ms = await batch_summary(store, events, consent=True, user_agent="UA/1")
    assert summary["event_count"] == 9
    assert summary["page_views"] == 2
    assert summary["page_urls"] == ["https://a/x", "https://a/y"]
    assert summary["first_url"] == "https://a/x"
    assert (summary["clicks"], summary["rage_clicks"], summary["inputs"]) == (3, 1, 1)
    assert summary["console_errors"] == 2
    assert summary["viewport"] == (1024, 700)
    assert summary["active_s"] == len({(now_ms + t) // 1000 for t in (2000, 2100, 2200, 3000)})
    assert (summary["consent"], summary["user_agent"]) == (1, "UA/1")
    assert summary["duration_s"] == 4.0


async def test_empty_batch_adds_no_session(store: ClickHouseStore) -> None:
    env = envelopes("empty", sessions=1, seed=13)[0]
    env.events = []
    await insert_envelopes(store, [env], uuid.uuid4().hex)
    assert await scalar(store, "SELECT count() FROM session_summaries WHERE site_id = 'empty'") == 0


async def test_store_refusing_writes_pauses_consumption_then_stores_everything(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "outage"
    topic = await new_topic(kafka_broker)
    batch = envelopes(site, sessions=4, seed=3)
    total = expected_events(batch)
    writer = writer_for(kafka_broker, store, topic, batch_max_rows=500)
    await store.command("DETACH TABLE events")  # inserts now fail: UNKNOWN_TABLE
    retries_before = sample("replaypipe_sink_insert_retries_total")
    await publish_envelopes(kafka_broker, topic, batch)
    await writer.start()
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + 60
        while sample("replaypipe_sink_insert_retries_total") < retries_before + 3:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.2)
        assert writer.paused and sample("replaypipe_sink_paused") == 1
        assert writer.consumer is not None and writer.consumer.paused()
        # Memory is bounded: nothing new is buffered while paused.
        buffered = writer.pending.rows
        await asyncio.sleep(1.0)
        assert writer.pending.rows == buffered
        await store.command("ATTACH TABLE events")
        while await count_final(store, site) < total:
            assert time.monotonic() < deadline, "writer did not resume after the table came back"
            await asyncio.sleep(0.2)
        assert not writer.paused and sample("replaypipe_sink_paused") == 0
    finally:
        await writer.stop()
        await task
        await writer.close()
    assert await count_final(store, site) == total
    assert (
        await scalar(
            store,
            "SELECT sum(event_count) FROM session_summaries WHERE site_id = {s:String}",
            s=site,
        )
        == total
    )


async def test_unwritable_message_goes_to_the_dlq_and_the_partition_moves_on(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "dlq"
    topic = await new_topic(kafka_broker, partitions=1)
    good = envelopes(site, sessions=1, seed=4)
    key = session_key(site, good[0].session_id)
    bad_shape = orjson.dumps({"v": 1, "site_id": site, "session_id": "x", "events": []})
    # Headers fine, events not: ClickHouse refuses the insert, the writer finds these two.
    bad_event = replace(good[0], seq=90, events=[good[0].events[0], 7]).to_json()  # type: ignore[list-item]
    cut_short = replace(good[0], seq=91).to_json()[:-40]
    await publish(
        kafka_broker,
        topic,
        [(key, b"{not json"), (key, bad_shape), (key, bad_event), (key, cut_short)],
    )
    await publish_envelopes(kafka_broker, topic, good)
    total = expected_events(good)

    async def good_stored() -> bool:
        return bool(await count_final(store, site) == total)

    await run_until(writer_for(kafka_broker, store, topic), good_stored)

    consumer = AIOKafkaConsumer(
        topic + ".dlq",
        bootstrap_servers=kafka_broker.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < 4 and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(messages)
    finally:
        await consumer.stop()
    assert [r.value for r in records] == [b"{not json", bad_shape, bad_event, cut_short]
    reasons = [dict(r.headers)["detail"].decode() for r in records]
    assert "not JSON" in reasons[0] and "missing field 'window_id'" in reasons[1]
    assert "event 1 is not a JSON object" in reasons[2] and "not JSON" in reasons[3]
    assert [dict(r.headers)["reason"] for r in records] == [
        b"bad_envelope",
        b"bad_envelope",
        b"bad_row",
        b"bad_envelope",
    ]
    # Nothing of the refused batches reached the tables.
    assert (
        await scalar(
            store, "SELECT count() FROM events WHERE site_id = {s:String} AND seq >= 90", s=site
        )
        == 0
    )


# --- one insert in flight while the next batch is consumed ----------------------------


@contextlib.asynccontextmanager
async def inserts_held(store: ClickHouseStore) -> AsyncIterator[None]:
    """Hold the store: the writer's next insert waits (in flight) while it keeps consuming."""
    async with store._lock:
        yield


async def wait_for(
    condition: Any, what: str, task: asyncio.Task[None], limit_s: float = 60
) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert not task.done(), task.exception()
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


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


async def events_before(broker: LocalKafkaBroker, topic: str, offsets: dict[int, int]) -> int:
    """How many events the messages of ``topic`` before ``offsets`` (per partition) hold."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in offsets]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        events = 0
        for tp in tps:
            while await consumer.position(tp) < offsets[tp.partition]:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if record.offset < offsets[tp.partition]:
                        events += len(BatchEnvelope.from_json(record.value).events)
        return events
    finally:
        await consumer.stop()


def thirds(batch: list[BatchEnvelope]) -> list[list[BatchEnvelope]]:
    """The envelopes split into three groups of whole sessions."""
    sessions = sorted({e.session_id for e in batch})
    return [[e for e in batch if e.session_id in sessions[i::3]] for i in range(3)]


async def writer_with_next_batch_pending(
    broker: LocalKafkaBroker,
    store: ClickHouseStore,
    writer: EventWriter,
    first: list[BatchEnvelope],
    second: list[BatchEnvelope],
) -> asyncio.Task[None]:
    """Start ``writer`` with the store held: ``first`` is in flight, ``second`` pending (full).

    The caller holds :func:`inserts_held`; ``second`` must hold more than
    ``batch_max_rows`` events.
    """
    await publish_envelopes(broker, writer.topic, first)
    await writer.start()
    task = asyncio.create_task(writer.run())
    await wait_for(lambda: writer.inserting, "an insert is in flight", task)
    await publish_envelopes(broker, writer.topic, second)
    limit = writer.settings.batch_max_rows
    await wait_for(lambda: writer.pending.rows >= limit, "the next batch is full", task)
    return task


async def test_outage_with_an_insert_in_flight_and_the_next_batch_pending_stores_each_event_once(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "overlap-outage"
    topic = await new_topic(kafka_broker)
    batch = envelopes(site, sessions=12, seed=21)
    first, second, third = thirds(batch)
    total = expected_events(batch)
    writer = writer_for(kafka_broker, store, topic, batch_max_rows=300)
    task: asyncio.Task[None] | None = None
    try:
        async with inserts_held(store):
            task = await writer_with_next_batch_pending(kafka_broker, store, writer, first, second)
            retries_before = sample("replaypipe_sink_insert_retries_total")
            await asyncio.to_thread(store.client.command, "DETACH TABLE events")
        await wait_for(
            lambda: sample("replaypipe_sink_insert_retries_total") >= retries_before + 2,
            "the in-flight insert was retried",
            task,
        )
        assert writer.paused and writer.holding and sample("replaypipe_sink_paused") == 1
        assert writer.inserting and writer.pending.rows >= 300
        # Memory stays bounded: nothing more is buffered while ClickHouse is down.
        await publish_envelopes(kafka_broker, topic, third)
        pending = writer.pending.rows
        await asyncio.sleep(0.5)
        assert writer.pending.rows == pending
        await store.command("ATTACH TABLE events")

        deadline = time.monotonic() + 60
        while await count_final(store, site) < total:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "writer did not catch up after the outage"
            await asyncio.sleep(0.2)
        assert not writer.paused
        await writer.stop()
        await task
        committed, ends = await committed_and_end(writer)
        assert committed == ends
    finally:
        await writer.stop()
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        await writer.close()
    # Retries reused their token: not even a duplicate waiting for a merge.
    assert (
        await scalar(store, "SELECT count() FROM events WHERE site_id = {s:String}", s=site)
        == total
    )
    summaries = await scalar(
        store, "SELECT sum(event_count) FROM session_summaries WHERE site_id = {s:String}", s=site
    )
    assert summaries == total


async def test_stop_finishes_the_insert_in_flight_then_stores_and_commits_the_pending_batch(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "overlap-stop"
    topic = await new_topic(kafka_broker)
    first, second, third = thirds(envelopes(site, sessions=12, seed=22))
    writer = writer_for(kafka_broker, store, topic, batch_max_rows=300)
    task: asyncio.Task[None] | None = None
    try:
        async with inserts_held(store):
            task = await writer_with_next_batch_pending(kafka_broker, store, writer, first, second)
            await publish_envelopes(kafka_broker, topic, third)  # not consumed: batch full
            await writer.stop()  # SIGTERM while one batch is in flight and one is pending
        await task
        committed, ends = await committed_and_end(writer)
    finally:
        await writer.stop()
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        await writer.close()
    # Both batches were stored and committed, and only they: the committed offsets
    # cover exactly the events in the table.
    assert 0 < sum(committed.values()) < sum(ends.values())
    stored = await scalar(store, "SELECT count() FROM events WHERE site_id = {s:String}", s=site)
    assert stored == await events_before(kafka_broker, topic, committed)
    assert stored > 300  # the batch in flight and the full pending one


# --- when a batch is inserted (insert_due) ------------------------------------------


async def count_events(store: ClickHouseStore, site: str) -> int:
    return int(await scalar(store, "SELECT count() FROM events WHERE site_id = {s:String}", s=site))


async def test_a_backlog_below_the_maximum_starts_an_insert_at_the_minimum_rows_then_waits(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "adaptive-start"
    topic = await new_topic(kafka_broker)
    batch = envelopes(site, sessions=6, seed=24)
    total = expected_events(batch)
    min_rows = total // 3
    # Neither the maximum size nor the time limit (an hour) can cut a batch here: only
    # the adaptive start can, and the interval (an hour) holds back the batch after it.
    writer = writer_for(
        kafka_broker,
        store,
        topic,
        batch_max_rows=10 * total,
        batch_max_seconds=3600.0,
        batch_min_rows=min_rows,
        min_insert_interval_s=3600.0,
    )
    await publish_envelopes(kafka_broker, topic, batch)
    inserts_before = sample("replaypipe_sink_inserts_total")
    rows_before = sample("replaypipe_sink_rows_total")
    await writer.start()
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + 60
        while await count_events(store, site) == 0:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "the backlog was not inserted before max size/time"
            await asyncio.sleep(0.1)
        assert sample("replaypipe_sink_inserts_total") - inserts_before == 1
        first_insert = sample("replaypipe_sink_rows_total") - rows_before
        assert min_rows <= first_insert < total
        assert await count_events(store, site) == first_insert
        # The rest is consumed but held back by the interval; a graceful stop stores it.
        rest = total - first_insert
        await wait_for(lambda: writer.pending.rows == rest, "the rest is consumed", task)
        await asyncio.sleep(0.5)  # several polls, caught up: still held back
        assert writer.pending.rows == rest and not writer.inserting
        assert sample("replaypipe_sink_inserts_total") - inserts_before == 1
    finally:
        await writer.stop()
        await task
        await writer.close()
    assert sample("replaypipe_sink_inserts_total") - inserts_before == 2
    assert await count_events(store, site) == total


async def test_after_a_full_batch_the_writer_inserts_what_is_left_as_soon_as_it_caught_up(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "adaptive-tail"
    topic = await new_topic(kafka_broker)
    backlog, tail, _ = thirds(envelopes(site, sessions=6, seed=25))
    # Neither the minimum rows, the interval nor the time limit can cut the tail's batch
    # here: only "caught up right after a full batch" (the end of a backlog) can.
    writer = writer_for(
        kafka_broker,
        store,
        topic,
        batch_max_rows=expected_events(backlog),
        batch_max_seconds=3600.0,
        batch_min_rows=10 * expected_events(backlog),
        min_insert_interval_s=3600.0,
    )
    await publish_envelopes(kafka_broker, topic, backlog)
    tail = tail[:3]
    task: asyncio.Task[None] | None = None
    try:
        async with inserts_held(store):
            await writer.start()
            task = asyncio.create_task(writer.run())
            await wait_for(lambda: writer.inserting, "the full batch is in flight", task)
            # The tail arrives while the full batch is being inserted.
            await publish_envelopes(kafka_broker, topic, tail)
            rows = expected_events(tail)
            await wait_for(lambda: writer.pending.rows == rows, "the tail is consumed", task)
        stored = expected_events(backlog) + rows
        deadline = time.monotonic() + 60
        while await count_events(store, site) < stored:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "the tail after a full batch was not inserted"
            await asyncio.sleep(0.1)
    finally:
        await writer.stop()
        if task is not None:
            await task
        await writer.close()
    assert await count_events(store, site) == stored


async def test_a_writer_joining_mid_stream_rebalances_without_losing_or_duplicating(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "overlap-rebalance"
    topic = await new_topic(kafka_broker, partitions=4)
    batch = envelopes(site, sessions=12, seed=23)
    first_part, second_part, third_part = thirds(batch)
    total = expected_events(batch)
    first = writer_for(kafka_broker, store, topic, batch_max_rows=300)
    second = EventWriter(first.settings, store, registry(), topic=topic, dlq_topic=topic + ".dlq")
    tasks: list[asyncio.Task[None]] = []
    try:
        async with inserts_held(store):
            tasks.append(
                await writer_with_next_batch_pending(
                    kafka_broker, store, first, first_part, second_part
                )
            )
            # The group rebalances while the first writer has an insert in flight and
            # a full batch pending.
            await second.start()
            tasks.append(asyncio.create_task(second.run()))
        await publish_envelopes(kafka_broker, topic, third_part)
        deadline = time.monotonic() + 90
        while await count_final(store, site) < total:
            for task in tasks:
                assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "the writers did not store every event"
            await asyncio.sleep(0.2)
    finally:
        for writer in (first, second):
            await writer.stop()
        for task in tasks:
            await task
        for writer in (first, second):
            await writer.close()
    assert await count_final(store, site) == total
    figures = await session_figures(store, site)
    assert len(figures) == 12 and sum(row[1] for row in figures) == total


# --- read API -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def read_api(
    store: ClickHouseStore, kafka_broker: LocalKafkaBroker
) -> AsyncIterator[TestClient[Any, Any]]:
    """The read API over a store holding sessions of sites 'shop' and 'blog'."""
    topic = await new_topic(kafka_broker)
    shop = envelopes("shop", sessions=12, seed=10)
    blog = envelopes("blog", sessions=3, seed=11)
    # One shop session rage-clicks and logs a console error on /help.
    rage = shop[0]
    t = rage.events[-1]["timestamp"] + 10
    rage.events.extend(
        [
            {"type": 4, "timestamp": t, "data": {"href": "https://shop.example/help"}},
            *[
                {
                    "type": 3,
                    "timestamp": t + 100 * i,
                    "data": {"source": 2, "type": 2, "id": 1, "x": 50, "y": 50},
                }
                for i in range(1, 5)
            ],
            {
                "type": 6,
                "timestamp": t + 600,
                "data": {"plugin": "rrweb/console@1", "payload": {"level": "error"}},
            },
        ]
    )
    await publish_envelopes(kafka_broker, topic, shop + blog)
    total = expected_events(shop + blog)

    async def stored() -> bool:
        return bool(
            await scalar(
                store, "SELECT count() FROM events FINAL WHERE site_id IN ('shop', 'blog')"
            )
            == total
        )

    await run_until(writer_for(kafka_broker, store, topic), stored)
    settings = SinkSettings(admin_token=ADMIN)
    client: TestClient[Any, Any] = TestClient(
        TestServer(make_read_app(store, registry(), settings))
    )
    await client.start_server()
    client.app[RAGE_SESSION] = rage.session_id
    yield client
    await client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_session_list_is_sorted_and_paginated(read_api: TestClient[Any, Any]) -> None:
    seen: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = await read_api.get(
            "/v1/sites/shop/sessions",
            params={"limit": "5", "offset": str(offset)},
            headers=bearer(SHOP_TOKEN),
        )
        assert response.status == 200
        doc = await response.json()
        seen.extend(doc["sessions"])
        offset = doc["next_offset"]
    assert len(seen) == 12 and len({s["session_id"] for s in seen}) == 12
    starts = [s["start_time"] for s in seen]
    assert starts == sorted(starts, reverse=True)
    first = seen[0]
    assert first["event_count"] > 0 and first["duration_s"] > 0 and first["active_s"] > 0
    assert first["first_url"].startswith("https://shop.example/checkout")
    assert first["viewport"] == {"width": 1280, "height": 800} and first["consent"] == "granted"


async def test_session_list_filters_by_url_and_rage_clicks_and_errors(
    read_api: TestClient[Any, Any],
) -> None:
    rage_session = read_api.app[RAGE_SESSION]
    for params in (
        {"rage": "true"},
        {"errors": "1"},
        {"url": "/help"},
        {"url": "/help", "rage": "1"},
    ):
        response = await read_api.get(
            "/v1/sites/shop/sessions", params=params, headers=bearer(SHOP_TOKEN)
        )
        doc = await response.json()
        assert [s["session_id"] for s in doc["sessions"]] == [rage_session], params
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"min_duration": "100000"}, headers=bearer(SHOP_TOKEN)
    )
    assert (await response.json())["sessions"] == []


async def test_session_list_filters_by_visitor_and_time(read_api: TestClient[Any, Any]) -> None:
    all_sessions = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    one = all_sessions[3]
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"visitor": one["visitor_id"]}, headers=bearer(SHOP_TOKEN)
    )
    assert [s["session_id"] for s in (await response.json())["sessions"]] == [one["session_id"]]
    response = await read_api.get(
        "/v1/sites/shop/sessions",
        params={"from": one["start_time"], "sort": "start"},
        headers=bearer(SHOP_TOKEN),
    )
    assert (await response.json())["sessions"][0]["session_id"] == one["session_id"]


async def test_bad_list_parameter_is_a_400_naming_it(read_api: TestClient[Any, Any]) -> None:
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"limit": "5000"}, headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 400 and (await response.json())["error"] == "invalid_limit"


async def test_session_events_stream_in_replay_order(read_api: TestClient[Any, Any]) -> None:
    session = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"][0]
    response = await read_api.get(
        f"/v1/sites/shop/sessions/{session['session_id']}/events", headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 200 and response.headers["Content-Type"] == "application/x-ndjson"
    events = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert len(events) == session["event_count"]
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert events[0]["type"] == 4


async def test_read_token_sees_only_its_own_site(read_api: TestClient[Any, Any]) -> None:
    blog_sessions = (
        await (await read_api.get("/v1/sites/blog/sessions", headers=bearer(BLOG_TOKEN))).json()
    )["sessions"]
    assert len(blog_sessions) == 3
    blog_session = blog_sessions[0]["session_id"]
    for path in ("/v1/sites/blog/sessions", f"/v1/sites/blog/sessions/{blog_session}/events"):
        response = await read_api.get(path, headers=bearer(SHOP_TOKEN))
        assert response.status == 403, path
    # The shop token asking for a blog session under its own site finds nothing.
    response = await read_api.get(
        f"/v1/sites/shop/sessions/{blog_session}/events", headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 404
    assert (await read_api.get("/v1/sites/shop/sessions")).status == 401


async def test_sql_endpoint_needs_the_admin_token_and_is_read_only(
    read_api: TestClient[Any, Any],
) -> None:
    query = "SELECT site_id, count() AS n FROM session_summaries GROUP BY site_id ORDER BY site_id"
    assert (await read_api.post("/v1/sql", data=query, headers=bearer(SHOP_TOKEN))).status == 403
    response = await read_api.post("/v1/sql", json={"sql": query}, headers=bearer(ADMIN))
    doc = await response.json()
    assert response.status == 200, doc
    assert doc["columns"] == ["site_id", "n"] and ["blog", 3] in doc["rows"]
    for forbidden in (
        "INSERT INTO events SELECT * FROM events",
        "DROP TABLE events",
        "SELECT 1; DROP TABLE events",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        response = await read_api.post("/v1/sql", data=forbidden, headers=bearer(ADMIN))
        assert response.status == 400, forbidden
    response = await read_api.post(
        "/v1/sql", data="SELECT number FROM system.numbers LIMIT 20000", headers=bearer(ADMIN)
    )
    doc = await response.json()
    assert doc["truncated"] is True and len(doc["rows"]) == 10_000


async def test_erasing_a_session_and_a_visitor_removes_them_from_every_query(
    read_api: TestClient[Any, Any], store: ClickHouseStore
) -> None:
    sessions = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    victim, visitor = sessions[-1], sessions[-2]
    assert (
        await read_api.delete(
            f"/v1/sites/shop/sessions/{victim['session_id']}", headers=bearer(SHOP_TOKEN)
        )
    ).status == 403
    response = await read_api.delete(
        f"/v1/sites/shop/sessions/{victim['session_id']}", headers=bearer(ADMIN)
    )
    assert (await response.json())["erased_sessions"] == [victim["session_id"]]
    response = await read_api.delete(
        f"/v1/sites/shop/visitors/{visitor['visitor_id']}", headers=bearer(ADMIN)
    )
    assert (await response.json())["erased_sessions"] == [visitor["session_id"]]

    gone = [victim["session_id"], visitor["session_id"]]
    for session_id in gone:
        response = await read_api.get(
            f"/v1/sites/shop/sessions/{session_id}/events", headers=bearer(SHOP_TOKEN)
        )
        assert response.status == 404
        for table in ("events", "events FINAL", "sessions", "session_summaries"):
            assert (
                await scalar(
                    store,
                    f"SELECT count() FROM {table} WHERE session_id = {{s:String}}",
                    s=session_id,
                )
                == 0
            )
    listed = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    assert len(listed) == 10 and not set(gone) & {s["session_id"] for s in listed}


async def test_events_carry_the_sites_retention_for_the_ttl(store: ClickHouseStore) -> None:
    ttl = await scalar(store, "SELECT engine_full FROM system.tables WHERE name = 'events'")
    assert "TTL toDateTime(ts) + toIntervalDay(retention_days)" in ttl
    assert (
        await scalar(store, "SELECT DISTINCT retention_days FROM events WHERE site_id = 'shop'")
        == 60
    )
