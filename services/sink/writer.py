"""The ClickHouse writer: batches masked envelopes into columnar inserts and
commits Kafka offsets only after ClickHouse acknowledged them.

Flow per batch: consume → read the envelope header (pure,
:mod:`services.sink.rows`) or DLQ → buffer per partition → when
:func:`insert_due` says so: one columnar insert of the message bytes into
``incoming_batches`` (ClickHouse's materialized views split them into
``events`` and fold them into ``sessions``) → commit.

When a batch goes (:func:`~services.sink.batching.insert_due`, docs/sink.md "When a batch is
inserted"): with no insert in flight, a batch starts as soon as it has
``batch_min_rows`` events and a share of ``min_insert_interval_s`` that
shrinks as the batch fills has passed since the previous insert started; a
full batch, one older than ``batch_max_seconds``, or the tail of a drained
backlog goes at once. While an insert is in flight the next batch keeps
growing up to the maximum, so under a backlog inserts grow large by
themselves, and a trickle still waits for the time limit.

Consuming and inserting overlap: the insert of batch N runs in its own task
(the engine call runs in a thread and releases the GIL) while the event loop
consumes batch N+1. At most one insert is in flight, and the next one starts
only after the previous one was acknowledged *and* its offsets committed, so
offsets are committed strictly in order. When the next batch is full before
the insert is done the writer stops fetching (back-pressure: it waits for the
insert, and if that takes long it pauses every partition and keeps polling so
the group membership holds), so memory stays bounded by about two batches.

A message whose header is fine but whose events are not (invalid JSON further
on, an event that is not an object) makes ClickHouse refuse the whole insert
with :data:`~services.sink.rows.REFUSED_MARKER`; the writer then finds it
(parsing the batch in Python, or if need be inserting message by message),
sends it to the DLQ and inserts the rest.

When an insert fails the writer pauses every assigned partition, retries the
same batch with the same deduplication token and exponential backoff, and
resumes after the ack. The next batch consumed meanwhile stays in memory
(bounded: nothing is fetched while paused) and is inserted after it.

On a rebalance the writer lets the in-flight insert finish and commit while
the revoked partitions are still its own (unless ClickHouse is failing: then
that insert commits nothing for them), and drops the not-yet-inserted rows of
the revoked partitions: their new owner re-reads them from the committed
offset, and the ReplacingMergeTree keys make any re-insert invisible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from services.shared import topics
from services.shared.envelope import EnvelopeError
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink import metrics
from services.sink.batching import IncomingMessage, PendingBatch, insert_due, is_full
from services.sink.rows import (
    INCOMING_COLUMNS,
    REFUSED_MARKER,
    RowError,
    check_envelope,
    estimated_events,
    incoming_row,
    read_header,
)
from services.sink.settings import SinkSettings
from services.sink.store import INCOMING_TABLE, ClickHouseStore

log = logging.getLogger("replaypipe.sink.writer")

DEFAULT_RETENTION_DAYS = SiteSettings(site_id="default").retention_days
MAX_BACKOFF_S = 10.0
# How long the loop waits for the in-flight insert before it polls the (paused)
# consumer again; well under max_poll_interval_ms, so the group keeps the member.
BACKPRESSURE_POLL_S = 1.0


class _FollowRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.writer.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.writer.holding:
            # Keep newly assigned partitions paused too (ClickHouse down, or back-pressure).
            assert self.writer.consumer is not None
            self.writer.consumer.pause(*assigned)


class EventWriter:
    """Consumes ``recordings.masked`` and writes events and session summaries to ClickHouse."""

    def __init__(
        self,
        settings: SinkSettings,
        store: ClickHouseStore,
        registry: SiteRegistry | None = None,
        *,
        topic: str = topics.MASKED,
        dlq_topic: str = topics.DLQ,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.dlq: AIOKafkaProducer | None = None
        self.pending = PendingBatch()  # being consumed into
        self.paused = False  # ClickHouse is failing: consumption paused until an insert succeeds
        self.holding = False  # every partition paused (ClickHouse failing or back-pressure)
        self._inserting: asyncio.Task[bool] | None = None
        self._inserting_batch: PendingBatch | None = None
        self._lag_updated = 0.0
        self._last_insert_started = -float("inf")  # monotonic
        self._last_batch_full = False
        self._next_offset: dict[TopicPartition, int] = {}  # after the last consumed message

    @property
    def inserting(self) -> bool:
        """True while an insert (with its commit) is in flight."""
        return self._inserting is not None

    async def start(self) -> None:
        """Connect the consumer and the DLQ producer."""
        max_bytes = self.settings.kafka.max_message_bytes
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_bytes,
            fetch_max_bytes=max_bytes * 4,
            max_poll_interval_ms=600_000,
        )
        self.consumer.subscribe([self.topic], listener=_FollowRebalance(self))
        self.dlq = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=max_bytes,
        )
        await self.consumer.start()
        await self.dlq.start()

    async def run(self) -> None:
        """Consume until :meth:`stop`, one insert in flight; then finish it and flush the rest.

        A batch is handed to the insert task when no insert is in flight and
        :func:`insert_due` says so (checked here and while a poll's records
        are buffered). Raises whatever crashed the insert task (not an insert
        error: those are retried).
        """
        assert self.consumer is not None
        caught_up = False
        try:
            while not self.stopping.is_set():
                await self._collect_insert()
                if self._start_insert_if_due(caught_up):
                    # Let the insert task hand the batch to the engine's thread now: the
                    # next poll may return records already fetched and be buffered without
                    # yielding to the loop (~50 ms for a full poll).
                    await asyncio.sleep(0)
                if self._inserting is not None and self._full():
                    # Back-pressure: the next batch is full. Wait for the insert instead of
                    # fetching more; if it takes long (ClickHouse down) poll paused below.
                    await asyncio.wait({self._inserting}, timeout=BACKPRESSURE_POLL_S)
                    if self._inserting.done():
                        continue
                self._hold_or_release()
                records = await self.consumer.getmany(timeout_ms=200, max_records=2000)
                await self._buffer(records)
                caught_up = not records or self._at_end()
                await self._update_lag()
            # Graceful stop: finish the in-flight insert, then store what is buffered.
            if await self._finish_insert() and self.pending.partitions:
                self._start_insert()
                await self._finish_insert()
        except BaseException:
            if self._inserting is not None:
                self._inserting.cancel()
            raise

    async def _collect_insert(self) -> None:
        """If the in-flight insert is done, clear it (re-raising a crash of its task)."""
        if self._inserting is not None and self._inserting.done():
            await self._finish_insert()

    async def _finish_insert(self) -> bool:
        """Wait for the in-flight insert; False if it gave up (stopping, ClickHouse down)."""
        task = self._inserting
        if task is None:
            return True
        try:
            return await task
        finally:
            self._inserting = None
            self._inserting_batch = None

    def _start_insert_if_due(self, caught_up: bool) -> bool:
        """Start the insert of the pending batch if none is in flight and it is due."""
        if self._inserting is not None or not self.pending.partitions:
            return False
        now = time.monotonic()
        due = insert_due(
            self.settings,
            rows=self.pending.rows,
            size=self.pending.bytes,
            age_s=now - self.pending.started,
            since_last_insert_s=now - self._last_insert_started,
            caught_up=caught_up,
            after_full_batch=self._last_batch_full,
        )
        if due:
            self._start_insert()
        return due

    def _start_insert(self) -> None:
        self._last_insert_started = time.monotonic()
        self._last_batch_full = self._full()
        batch, self.pending = self.pending, PendingBatch()
        metrics.BUFFERED_ROWS.set(0)
        self._inserting_batch = batch
        self._inserting = asyncio.create_task(self._store(batch), name="sink-insert")

    async def _store(self, batch: PendingBatch) -> bool:
        """Insert ``batch`` (retrying until stored or stopping), then commit its offsets."""
        assert self.consumer is not None
        if batch.bytes and not await self._insert_with_retry(batch):
            return False  # stopping while ClickHouse is down: nothing committed, Kafka redelivers
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in batch.commit_offsets().items() if tp in assigned}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except Exception as exc:  # a rebalance raced the commit: redelivery is harmless
                log.warning("offset commit failed", extra={"reason": type(exc).__name__})
        return True

    async def release(self, revoked: Iterable[TopicPartition]) -> None:
        """Rebalance: partitions are being taken away from this writer.

        The in-flight insert may finish and commit while they are still ours
        (unless ClickHouse is failing: waiting would stall the whole group);
        if it is still running after that, it commits nothing for them.
        Buffered rows of revoked partitions are dropped: they are re-read.
        """
        revoked = set(revoked)
        task = self._inserting
        while task is not None and not task.done() and not self.paused:
            if self.stopping.is_set():
                break
            await asyncio.wait({task}, timeout=BACKPRESSURE_POLL_S)
        if self._inserting_batch is not None and task is not None and not task.done():
            self._inserting_batch.revoked |= revoked
        dropped = self.pending.drop(revoked)
        for tp in revoked:
            self._next_offset.pop(tp, None)
        metrics.BUFFERED_ROWS.set(self.pending.rows)
        if dropped:
            log.info("partitions revoked; buffered rows dropped", extra={"count": dropped})

    def _at_end(self) -> bool:
        """Every assigned partition consumed up to its high watermark (as of the last fetch).

        Lets the tail of a backlog go without first waiting for an empty poll
        (200 ms). Unknown (no fetch yet, or offsets that skip, e.g. transaction
        markers): False, and the empty poll decides as before.
        """
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        for tp in assigned:
            highwater = self.consumer.highwater(tp)
            if highwater is None or self._next_offset.get(tp, 0) != highwater:
                return False
        return bool(assigned)

    async def _buffer(self, records: dict[TopicPartition, list[Any]]) -> None:
        assert self.consumer is not None
        assigned: set[TopicPartition] | None = None  # re-read after yielding to the loop
        for tp, messages in records.items():
            if assigned is not None and tp not in assigned:
                continue  # revoked meanwhile: its new owner reads it from the committed offset
            for message in messages:
                self.pending.add(tp, message.offset, await self._incoming_or_dlq(message))
                self._next_offset[tp] = message.offset + 1
                if self._inserting is not None and self._inserting.done():
                    await self._finish_insert()  # stored and committed: the next may start
                # One poll can hold up to 2,000 messages (~80k events): start the insert
                # as soon as it is due instead of after the whole poll is buffered, and
                # let its task hand the batch to the engine's thread right away.
                if self._inserting is None and self._start_insert_if_due(caught_up=False):
                    await asyncio.sleep(0)
                    assigned = self.consumer.assignment()
                    if tp not in assigned:
                        break
        metrics.BUFFERED_ROWS.set(self.pending.rows)

    def _full(self) -> bool:
        return is_full(self.settings, rows=self.pending.rows, size=self.pending.bytes)

    def _hold_or_release(self) -> None:
        """Pause every partition while ClickHouse fails or the next batch is full; else resume."""
        assert self.consumer is not None
        hold = self.paused or (self._inserting is not None and self._full())
        if hold:
            # Also covers partitions assigned since the last call. Records already fetched
            # for them are discarded by aiokafka and fetched again after the resume.
            self.consumer.pause(*self.consumer.assignment())
        elif self.holding:
            self.consumer.resume(*self.consumer.assignment())
        self.holding = hold

    def _retention_days(self, site_id: str) -> int:
        site = self.registry.get(site_id) if self.registry is not None else None
        return site.retention_days if site is not None else DEFAULT_RETENTION_DAYS

    async def _incoming_or_dlq(self, message: Any) -> IncomingMessage | None:
        raw = message.value or b""
        try:
            header = read_header(raw)
        except (EnvelopeError, RowError) as exc:
            await self._send_to_dlq(message, _dlq_reason(exc), str(exc))
            return None
        row = incoming_row(header, raw, self._retention_days(header.site_id))
        return IncomingMessage(message, row, estimated_events(raw), len(raw))

    async def _send_to_dlq(self, message: Any, reason: str, detail: str) -> None:
        assert self.dlq is not None
        await self.dlq.send_and_wait(
            self.dlq_topic,
            message.value,
            key=message.key,
            headers=[
                ("reason", reason.encode()),
                ("detail", detail[:500].encode()),
                ("stage", b"sink"),
                ("source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
            ],
        )
        metrics.DLQ.labels(reason).inc()
        log.warning(
            "message sent to the DLQ",
            extra={"reason": reason, "partition": message.partition, "offset": message.offset},
        )

    async def _insert_with_retry(self, batch: PendingBatch) -> bool:
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                if batch.rows or batch.bytes:
                    await self.store.insert_columns(
                        INCOMING_TABLE, batch.columns(), INCOMING_COLUMNS, batch.dedup_token()
                    )
            except Exception as exc:  # any driver/engine error: retry, never drop
                if _refused(exc) and await self._send_refused_to_dlq(batch):
                    continue  # the refused messages are out: insert the rest now
                metrics.INSERT_FAILURES.inc()
                log.warning(
                    "insert failed; consumption paused, retrying",
                    extra={"reason": _reason(exc), "count": batch.rows},
                )
                self._pause()
                if not await self._wait_unless_stopping(delay):
                    return False
                delay = min(delay * 2, MAX_BACKOFF_S)
                metrics.INSERT_RETRIES.inc()
                continue
            metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
            metrics.INSERTS.inc()
            metrics.ROWS.inc(batch.rows)
            if self.paused:
                # The consuming loop resumes the partitions at its next poll.
                self.paused = False
                metrics.PAUSED.set(0)
                log.info("insert succeeded; consumption resumed")
            return True

    async def _send_refused_to_dlq(self, batch: PendingBatch) -> bool:
        """Find the messages ClickHouse refused, send them to the DLQ, take them out.

        First by parsing every message of the batch in Python (precise reasons);
        if that finds nothing, by inserting message by message. Returns False if
        nothing was found (then the failure is treated as an outage).
        """
        found = False
        for tp, buffer in list(batch.partitions.items()):
            for message in list(buffer.messages):
                try:
                    check_envelope(message.row[-1])
                except (EnvelopeError, RowError) as exc:
                    await self._send_to_dlq(message.record, _dlq_reason(exc), str(exc))
                    batch.remove(tp, message)
                    found = True
        if found:
            return True
        token = batch.dedup_token()
        for tp, buffer in list(batch.partitions.items()):
            for message in list(buffer.messages):
                try:
                    await self.store.insert_columns(
                        INCOMING_TABLE,
                        [[value] for value in message.row],
                        INCOMING_COLUMNS,
                        f"{token}-{tp.partition}-{message.record.offset}",
                    )
                except Exception as exc:
                    if not _refused(exc):
                        return found
                    detail = "ClickHouse refused its events: " + _reason(exc)
                    await self._send_to_dlq(message.record, "bad_row", detail)
                    batch.remove(tp, message)
                    found = True
        return found

    def _pause(self) -> None:
        """ClickHouse is failing: stop fetching now (the consuming loop keeps polling)."""
        assert self.consumer is not None
        self.consumer.pause(*self.consumer.assignment())
        self.holding = True
        if not self.paused:
            self.paused = True
            metrics.PAUSED.set(1)

    async def _wait_unless_stopping(self, seconds: float) -> bool:
        """Wait ``seconds`` (the retry backoff); False if the writer is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return not self.stopping.is_set()

    async def _update_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._lag_updated < 1.0:
            return
        self._lag_updated = now
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await self.consumer.position(tp)
            except Exception:  # no position yet (just assigned)
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(highwater - position, 0))

    async def stop(self) -> None:
        """Ask :meth:`run` to finish the in-flight insert, store the rest, commit and return."""
        self.stopping.set()

    async def close(self) -> None:
        """Close Kafka clients."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.dlq is not None:
            await self.dlq.stop()


def _dlq_reason(exc: Exception) -> str:
    return "bad_envelope" if isinstance(exc, EnvelopeError) else "bad_row"


def _refused(exc: Exception) -> bool:
    """ClickHouse refused the insert because of a message's content (not an outage)."""
    return REFUSED_MARKER in str(exc)


def _reason(exc: Exception) -> str:
    """A short reason for logs: the ClickHouse error code name if there is one, else the type."""
    text = str(exc)
    start = text.rfind("(")
    if start != -1 and text.rstrip().endswith(")"):
        code = text[start + 1 : text.rstrip().rfind(")")]
        if code.isupper() and len(code) < 64:
            return code
    return type(exc).__name__
