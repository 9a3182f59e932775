"""The ClickHouse writer: batches masked envelopes into columnar inserts and
commits Kafka offsets only after ClickHouse acknowledged them.

Flow per batch: consume → read the envelope header (pure,
:mod:`services.sink.rows`) or DLQ (:mod:`services.sink.dlq`) → buffer per
partition (:mod:`services.sink.batching`) → when
:func:`~services.sink.batching.insert_due` says so: one columnar insert of
the message bytes into ``incoming_batches`` (ClickHouse's materialized views
split them into ``events`` and fold them into ``sessions``) → commit.

Consuming and inserting overlap: the insert of batch N runs in its own task
(the engine call runs in a thread and releases the GIL) while the event loop
consumes batch N+1. At most one insert is in flight, and the next one starts
only after the previous one was acknowledged *and* its offsets committed, so
offsets are committed strictly in order.

What the writer is doing is one :class:`WriterState`:

- ``CONSUMING``: fetching (an insert may be in flight);
- ``HOLDING``: every partition paused — back-pressure (the next batch is full
  before the insert in flight is done: memory stays bounded by about two
  batches), or ClickHouse just came back; the loop resumes them at its next
  poll unless the next batch is still full;
- ``PAUSED``: ClickHouse is failing (:func:`~services.sink.refusals.classify_insert_failure`
  says outage): every partition paused, the insert in flight retried with the
  same deduplication token and exponential backoff; the next batch consumed
  meanwhile stays in memory and is inserted after it;
- ``STOPPING``: :meth:`EventWriter.stop` was called (final): no more
  fetching, the insert in flight finishes, the rest is stored.

The consumer keeps polling while partitions are paused (paused polls return
nothing), so the group membership holds.

An insert that fails because of its data — a message whose header is fine
but whose events are not (error code 395, the ``throwIf`` of
``parsed_batches_mv``), or a batch over a per-query limit such as
``max_memory_usage`` (241) — is not an outage
(:mod:`services.sink.refusals`): the writer parses the failing part in Python
(invalid envelopes go to the DLQ with their precise reason) and otherwise
splits it in halves until the message that fails alone is found; that one
goes to the DLQ as a pointer, everything else is stored, consumption never
pauses. A clean batch is still one insert.

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
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from services.shared import topics
from services.shared.envelope import EnvelopeError
from services.shared.kafka_security import aiokafka_client_kwargs
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink import metrics
from services.sink.batching import (
    IncomingMessage,
    Partition,
    PendingBatch,
    columns,
    insert_due,
    is_full,
    part_token,
)
from services.sink.dlq import DeadLetters
from services.sink.refusals import InsertFailure, classify_insert_failure, failure_name
from services.sink.rows import (
    INCOMING_COLUMNS,
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


class WriterState(Enum):
    """What the writer is doing (module docstring); ``STOPPING`` is final."""

    CONSUMING = "consuming"
    HOLDING = "holding"
    PAUSED = "paused"
    STOPPING = "stopping"


@dataclass(slots=True)
class InFlightInsert:
    """The insert (with its commit) running in its own task, and the batch it stores."""

    task: asyncio.Task[bool]
    batch: PendingBatch


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
        self.state = WriterState.CONSUMING
        self.consumer: AIOKafkaConsumer | None = None
        self.dlq: DeadLetters | None = None
        self.pending = PendingBatch()  # being consumed into
        self._in_flight: InFlightInsert | None = None
        self._stop_requested = asyncio.Event()  # cuts a retry backoff short
        self._lag_updated = 0.0
        self._last_insert_started = -float("inf")  # monotonic
        self._last_batch_full = False
        self._next_offset: dict[TopicPartition, int] = {}  # after the last consumed message

    @property
    def inserting(self) -> bool:
        """True while an insert (with its commit) is in flight."""
        return self._in_flight is not None

    @property
    def paused(self) -> bool:
        """ClickHouse is failing: consumption paused until an insert succeeds."""
        return self.state is WriterState.PAUSED

    @property
    def holding(self) -> bool:
        """Every partition is paused (ClickHouse failing, or back-pressure)."""
        return self.state in (WriterState.HOLDING, WriterState.PAUSED)

    def _enter(self, state: WriterState) -> None:
        """Move to ``state`` (never out of ``STOPPING``), keeping the paused gauge in step."""
        if self.state is WriterState.STOPPING or state is self.state:
            return
        self.state = state
        metrics.PAUSED.set(1 if state is WriterState.PAUSED else 0)

    async def start(self) -> None:
        """Connect the consumer and the DLQ producer."""
        max_bytes = self.settings.kafka.max_message_bytes
        self.consumer = AIOKafkaConsumer(
            **aiokafka_client_kwargs(self.settings.kafka),
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_bytes,
            fetch_max_bytes=max_bytes * 4,
            fetch_min_bytes=self.settings.fetch_min_bytes,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_poll_interval_ms=600_000,
        )
        self.consumer.subscribe([self.topic], listener=_FollowRebalance(self))
        self.dlq = DeadLetters(self.settings.kafka, self.dlq_topic, max_request_size=max_bytes)
        await self.consumer.start()
        await self.dlq.start()

    async def run(self) -> None:
        """Consume until :meth:`stop`, one insert in flight; then finish it and flush the rest.

        A batch is handed to the insert task when no insert is in flight and
        :func:`~services.sink.batching.insert_due` says so (checked here and
        while a poll's records are buffered). Raises whatever crashed the
        insert task (not an insert error: those are retried).
        """
        assert self.consumer is not None
        caught_up = False
        try:
            while self.state is not WriterState.STOPPING:
                await self._collect_insert()
                if self._start_insert_if_due(caught_up):
                    # Let the insert task hand the batch to the engine's thread now: the
                    # next poll may return records already fetched and be buffered without
                    # yielding to the loop (~50 ms for a full poll).
                    await asyncio.sleep(0)
                in_flight = self._in_flight
                if in_flight is not None and self._full():
                    # Back-pressure: the next batch is full. Wait for the insert instead of
                    # fetching more; if it takes long (ClickHouse down) poll paused below.
                    await asyncio.wait({in_flight.task}, timeout=BACKPRESSURE_POLL_S)
                    if in_flight.task.done():
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
            if self._in_flight is not None:
                self._in_flight.task.cancel()
            raise

    async def _collect_insert(self) -> None:
        """If the in-flight insert is done, clear it (re-raising a crash of its task)."""
        if self._in_flight is not None and self._in_flight.task.done():
            await self._finish_insert()

    async def _finish_insert(self) -> bool:
        """Wait for the in-flight insert; False if it gave up (stopping, ClickHouse down)."""
        in_flight = self._in_flight
        if in_flight is None:
            return True
        try:
            return await in_flight.task
        finally:
            self._in_flight = None

    def _start_insert_if_due(self, caught_up: bool) -> bool:
        """Start the insert of the pending batch if none is in flight and it is due."""
        if self._in_flight is not None or not self.pending.partitions:
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
        task = asyncio.create_task(self._store_and_commit(batch), name="sink-insert")
        self._in_flight = InFlightInsert(task, batch)

    async def _store_and_commit(self, batch: PendingBatch) -> bool:
        """Insert ``batch`` (retrying until stored or stopping), then commit its offsets."""
        assert self.consumer is not None
        if batch.bytes and not await self._insert_isolating_refusals(batch):
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
        (unless ClickHouse is failing or the writer is stopping: waiting would
        stall the whole group); if it is still running after that, it commits
        nothing for them. Buffered rows of revoked partitions are dropped:
        they are re-read.
        """
        revoked = set(revoked)
        in_flight = self._in_flight
        while (
            in_flight is not None
            and not in_flight.task.done()
            and self.state not in (WriterState.PAUSED, WriterState.STOPPING)
        ):
            await asyncio.wait({in_flight.task}, timeout=BACKPRESSURE_POLL_S)
        if in_flight is not None and not in_flight.task.done():
            in_flight.batch.revoked |= revoked
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
                if self._in_flight is not None and self._in_flight.task.done():
                    await self._finish_insert()  # stored and committed: the next may start
                # One poll can hold up to 2,000 messages (~80k events): start the insert
                # as soon as it is due instead of after the whole poll is buffered, and
                # let its task hand the batch to the engine's thread right away.
                if self._in_flight is None and self._start_insert_if_due(caught_up=False):
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
        if self.state is WriterState.PAUSED or (self._in_flight is not None and self._full()):
            # Also covers partitions assigned since the last call. Records already fetched
            # for them are discarded by aiokafka and fetched again after the resume.
            self.consumer.pause(*self.consumer.assignment())
            self._enter(WriterState.PAUSED if self.paused else WriterState.HOLDING)
        elif self.state is WriterState.HOLDING:
            self.consumer.resume(*self.consumer.assignment())
            self._enter(WriterState.CONSUMING)

    def _retention_days(self, site_id: str) -> int:
        site = self.registry.get(site_id) if self.registry is not None else None
        return site.retention_days if site is not None else DEFAULT_RETENTION_DAYS

    async def _incoming_or_dlq(self, message: Any) -> IncomingMessage | None:
        raw = message.value or b""
        try:
            header = read_header(raw)
        except (EnvelopeError, RowError) as exc:
            assert self.dlq is not None
            await self.dlq.send_copy(message, _dlq_reason(exc), str(exc))
            return None
        row = incoming_row(header, raw, self._retention_days(header.site_id))
        return IncomingMessage(message, row, estimated_events(raw), len(raw))

    async def _insert_isolating_refusals(self, batch: PendingBatch) -> bool:
        """Store every message of ``batch``; False if stopping while ClickHouse is down.

        An outage (:func:`~services.sink.refusals.classify_insert_failure`)
        pauses consumption and retries the same insert with the same token and
        exponential backoff: nothing is dropped. A refusal caused by the data
        is isolated instead: the failing part's messages are parsed in Python
        (an invalid envelope goes to the DLQ with its precise reason, the rest
        is retried), and a part that still fails — a row ClickHouse cannot
        read, or an insert over a per-query limit — is split in halves, each
        inserted on its own, until the message that fails alone goes to the
        DLQ as a pointer (``reason`` ``bad_row`` or ``over_limit``). Every
        other message is stored; a clean batch is one insert, as before.
        """
        parts = [batch.items()] if batch.messages() else []
        split_token = ""  # the batch's token when it was first split ("" = not split)
        parsed: set[int] = set()  # ids of messages already checked in Python
        delay = 0.2
        while parts:
            part = parts[-1]
            token = part_token(split_token, part) if split_token else batch.dedup_token()
            started = time.perf_counter()
            try:
                await self.store.insert_columns(
                    INCOMING_TABLE, columns([m for _, m in part]), INCOMING_COLUMNS, token
                )
            except Exception as exc:  # classified: an outage is retried, never dropped
                failure = classify_insert_failure(exc)
                if failure is InsertFailure.OUTAGE:
                    if not await self._back_off(exc, delay, sum(m.events for _, m in part)):
                        return False
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                metrics.INSERT_REFUSALS.labels(failure.value).inc()
                log.warning(
                    "insert refused by its data; isolating the message",
                    extra={"reason": failure_name(exc), "count": len(part)},
                )
                if failure is InsertFailure.BAD_ROW:
                    invalid = await self._send_invalid_to_dlq(batch, part, parsed)
                    if invalid:
                        part[:] = [(tp, m) for tp, m in part if id(m) not in invalid]
                        if not part:
                            parts.pop()
                        continue  # the invalid envelopes are out: insert the rest now
                parts.pop()
                if len(part) == 1:
                    await self._send_refused_to_dlq(batch, *part[0], failure, exc)
                else:
                    split_token = split_token or batch.dedup_token()
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]  # first half next
                continue
            parts.pop()
            delay = 0.2
            metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
            metrics.INSERTS.inc()
            metrics.ROWS.inc(sum(m.events for _, m in part))
            if self.paused:
                # The partitions stay paused: the consuming loop resumes them at its next poll.
                self._enter(WriterState.HOLDING)
                log.info("insert succeeded; consumption resumed")
        return True

    async def _back_off(self, exc: Exception, delay: float, rows: int) -> bool:
        """ClickHouse is failing: pause consumption, wait ``delay``; False if stopping."""
        metrics.INSERT_FAILURES.inc()
        log.warning(
            "insert failed; consumption paused, retrying",
            extra={"reason": failure_name(exc), "count": rows},
        )
        self._pause()
        if not await self._wait_unless_stopping(delay):
            return False
        metrics.INSERT_RETRIES.inc()
        return True

    async def _send_invalid_to_dlq(
        self, batch: PendingBatch, part: list[tuple[Partition, IncomingMessage]], parsed: set[int]
    ) -> set[int]:
        """Parse ``part``'s messages in Python; send invalid envelopes to the DLQ (copies).

        Returns the ids of the messages taken out of ``batch``. Each message is
        parsed once per batch (``parsed``), however often its part is split.
        """
        assert self.dlq is not None
        invalid: set[int] = set()
        for tp, message in part:
            if id(message) in parsed:
                continue
            parsed.add(id(message))
            try:
                check_envelope(message.row[-1])
            except (EnvelopeError, RowError) as exc:
                await self.dlq.send_copy(message.record, _dlq_reason(exc), str(exc))
                batch.remove(tp, message)
                invalid.add(id(message))
        return invalid

    async def _send_refused_to_dlq(
        self,
        batch: PendingBatch,
        tp: Partition,
        message: IncomingMessage,
        failure: InsertFailure,
        exc: Exception,
    ) -> None:
        """A message ClickHouse refuses even alone: a pointer to it goes to the DLQ."""
        assert self.dlq is not None
        detail = f"ClickHouse refused this message alone: {failure_name(exc)}"
        await self.dlq.send_pointer(message.record, failure.value, detail)
        batch.remove(tp, message)

    def _pause(self) -> None:
        """ClickHouse is failing: stop fetching now (the consuming loop keeps polling)."""
        assert self.consumer is not None
        self.consumer.pause(*self.consumer.assignment())
        self._enter(WriterState.PAUSED)

    async def _wait_unless_stopping(self, seconds: float) -> bool:
        """Wait ``seconds`` (the retry backoff); False if the writer is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
        return not self._stop_requested.is_set()

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
        self._enter(WriterState.STOPPING)
        self._stop_requested.set()

    async def close(self) -> None:
        """Close Kafka clients."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.dlq is not None:
            await self.dlq.close()


def _dlq_reason(exc: Exception) -> str:
    return "bad_envelope" if isinstance(exc, EnvelopeError) else "bad_row"

