"""The sink writer on the real broker and the real embedded ClickHouse: exactly-once
storage across redelivery, outages, stops and rebalances, and when a batch is inserted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.envelope import BatchEnvelope
from services.shared.topics import session_key
from services.sink.store import ClickHouseStore
from services.sink.writer import EventWriter
from tests.integration.sink_support import (
    committed_and_end,
    count_final,
    envelopes,
    expected_events,
    metric,
    new_topic,
    publish,
    publish_envelopes,
    registry,
    run_until,
    scalar,
    session_figures,
    writer_for,
)

pytestmark = pytest.mark.integration


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


async def test_store_refusing_writes_pauses_consumption_then_stores_everything(
    kafka_broker: LocalKafkaBroker, store: ClickHouseStore
) -> None:
    site = "outage"
    topic = await new_topic(kafka_broker)
    batch = envelopes(site, sessions=4, seed=3)
    total = expected_events(batch)
    writer = writer_for(kafka_broker, store, topic, batch_max_rows=500)
    await store.command("DETACH TABLE events")  # inserts now fail: UNKNOWN_TABLE
    retries_before = metric("replaypipe_sink_insert_retries_total")
    await publish_envelopes(kafka_broker, topic, batch)
    await writer.start()
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + 60
        while metric("replaypipe_sink_insert_retries_total") < retries_before + 3:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.2)
        assert writer.paused and metric("replaypipe_sink_paused") == 1
        assert writer.consumer is not None and writer.consumer.paused()
        # Memory is bounded: nothing new is buffered while paused.
        buffered = writer.pending.rows
        await asyncio.sleep(1.0)
        assert writer.pending.rows == buffered
        await store.command("ATTACH TABLE events")
        while await count_final(store, site) < total:
            assert time.monotonic() < deadline, "writer did not resume after the table came back"
            await asyncio.sleep(0.2)
        assert not writer.paused and metric("replaypipe_sink_paused") == 0
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
            retries_before = metric("replaypipe_sink_insert_retries_total")
            await asyncio.to_thread(store.client.command, "DETACH TABLE events")
        await wait_for(
            lambda: metric("replaypipe_sink_insert_retries_total") >= retries_before + 2,
            "the in-flight insert was retried",
            task,
        )
        assert writer.paused and writer.holding and metric("replaypipe_sink_paused") == 1
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
    inserts_before = metric("replaypipe_sink_inserts_total")
    rows_before = metric("replaypipe_sink_rows_total")
    await writer.start()
    task = asyncio.create_task(writer.run())
    try:
        deadline = time.monotonic() + 60
        while await count_events(store, site) == 0:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "the backlog was not inserted before max size/time"
            await asyncio.sleep(0.1)
        assert metric("replaypipe_sink_inserts_total") - inserts_before == 1
        first_insert = metric("replaypipe_sink_rows_total") - rows_before
        assert min_rows <= first_insert < total
        assert await count_events(store, site) == first_insert
        # The rest is consumed but held back by the interval; a graceful stop stores it.
        rest = total - first_insert
        await wait_for(lambda: writer.pending.rows == rest, "the rest is consumed", task)
        await asyncio.sleep(0.5)  # several polls, caught up: still held back
        assert writer.pending.rows == rest and not writer.inserting
        assert metric("replaypipe_sink_inserts_total") - inserts_before == 1
    finally:
        await writer.stop()
        await task
        await writer.close()
    assert metric("replaypipe_sink_inserts_total") - inserts_before == 2
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
