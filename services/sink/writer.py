"""The ClickHouse writer: batches masked envelopes into inserts, commits after the ack."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.shared import topics
from services.shared.envelope import BatchEnvelope, EnvelopeError
from services.sink import metrics
from services.sink.rows import EVENT_COLUMNS, event_rows
from services.sink.settings import SinkSettings

log = logging.getLogger("replaypipe.sink.writer")


class ClickHouseStore:
    """Async wrapper over the sync clickhouse-connect client (calls run in a thread).

    One lock serialises calls: the embedded engine is one per process and the
    client is not documented as thread-safe.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    async def insert_events(self, rows: list[list[Any]], dedup_token: str) -> None:
        """Insert event rows; a retry with the same token is dropped by ClickHouse."""
        async with self._lock:
            await asyncio.to_thread(
                self.client.insert,
                "events",
                rows,
                column_names=list(EVENT_COLUMNS),
                settings={"insert_deduplication_token": dedup_token},
            )

    async def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        """Run a query; returns the clickhouse-connect QueryResult."""
        async with self._lock:
            return await asyncio.to_thread(
                self.client.query, sql, parameters=parameters, settings=settings
            )

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run a statement without a result set."""
        async with self._lock:
            return await asyncio.to_thread(self.client.command, sql, parameters=parameters)


@dataclass
class PendingBatch:
    """Rows consumed but not yet inserted, and the offsets they cover."""

    rows: list[list[Any]] = field(default_factory=list)
    bytes: int = 0
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    started: float = 0.0

    def add(self, tp: TopicPartition, offset: int, rows: list[list[Any]], size: int) -> None:
        if not self.rows and not self.offsets:
            self.started = time.monotonic()
        self.rows.extend(rows)
        self.bytes += size
        first, _ = self.offsets.get(tp, (offset, offset))
        self.offsets[tp] = (first, offset)

    def dedup_token(self) -> str:
        """Same consumed offsets → same token, so a retried insert is idempotent."""
        spec = ",".join(
            f"{tp.topic}/{tp.partition}/{a}-{b}"
            for tp, (a, b) in sorted(self.offsets.items(), key=lambda kv: kv[0].partition)
        )
        return hashlib.sha256(spec.encode()).hexdigest()


class EventWriter:
    """Consumes ``recordings.masked`` and writes event rows to ClickHouse."""

    def __init__(self, settings: SinkSettings, store: ClickHouseStore) -> None:
        self.settings = settings
        self.store = store
        self.stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.dlq: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the consumer and the DLQ producer."""
        max_bytes = self.settings.kafka.max_message_bytes
        self.consumer = AIOKafkaConsumer(
            topics.MASKED,
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_bytes,
            fetch_max_bytes=max_bytes * 4,
            max_poll_interval_ms=600_000,
        )
        self.dlq = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            max_request_size=max_bytes,
        )
        await self.consumer.start()
        await self.dlq.start()

    async def run(self) -> None:
        """Consume until :meth:`stop`; flush by rows, bytes or time."""
        assert self.consumer is not None
        pending = PendingBatch()
        while not self.stopping.is_set():
            records = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in records.items():
                for message in messages:
                    rows = await self._rows_or_dlq(message)
                    pending.add(tp, message.offset, rows, len(message.value or b""))
            metrics.BUFFERED_ROWS.set(len(pending.rows))
            if pending.offsets and self._due(pending):
                await self._flush(pending)
                pending = PendingBatch()
        if pending.offsets:
            await self._flush(pending)

    def _due(self, pending: PendingBatch) -> bool:
        s = self.settings
        return (
            len(pending.rows) >= s.batch_max_rows
            or pending.bytes >= s.batch_max_bytes
            or time.monotonic() - pending.started >= s.batch_max_seconds
        )

    async def _rows_or_dlq(self, message: Any) -> list[list[Any]]:
        try:
            envelope = BatchEnvelope.from_json(message.value or b"")
            return event_rows(envelope)
        except (EnvelopeError, ValueError, TypeError) as exc:
            reason = "bad_envelope" if isinstance(exc, EnvelopeError) else "bad_row"
            assert self.dlq is not None
            await self.dlq.send_and_wait(
                topics.DLQ,
                message.value,
                key=message.key,
                headers=[("reason", str(exc)[:500].encode()), ("stage", b"sink")],
            )
            metrics.DLQ.labels(reason).inc()
            log.warning(
                "message sent to the DLQ",
                extra={"reason": reason, "partition": message.partition, "offset": message.offset},
            )
            return []

    async def _flush(self, pending: PendingBatch) -> None:
        assert self.consumer is not None
        if pending.rows:
            await self._insert_with_retry(pending)
        await self.consumer.commit({tp: last + 1 for tp, (_, last) in pending.offsets.items()})
        metrics.BUFFERED_ROWS.set(0)

    async def _insert_with_retry(self, pending: PendingBatch) -> None:
        token = pending.dedup_token()
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                await self.store.insert_events(pending.rows, token)
            except Exception as exc:  # any driver/engine error: retry, never drop
                metrics.INSERT_FAILURES.inc()
                metrics.INSERT_RETRIES.inc()
                metrics.PAUSED.set(1)
                log.warning(
                    "insert failed; retrying",
                    extra={"reason": type(exc).__name__, "count": len(pending.rows)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            metrics.PAUSED.set(0)
            metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
            metrics.INSERTS.inc()
            metrics.ROWS.inc(len(pending.rows))
            return

    async def stop(self) -> None:
        """Ask :meth:`run` to flush, commit and return."""
        self.stopping.set()

    async def close(self) -> None:
        """Close Kafka clients."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.dlq is not None:
            await self.dlq.stop()
