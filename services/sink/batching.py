"""The sink's batching policy (pure): what is buffered, when it goes, how it is named.

- :func:`insert_due`: whether the pending batch should be inserted now
  (docs/sink.md, "When a batch is inserted");
- :class:`PendingBatch`: the messages consumed since the last insert, per
  partition, with the offsets to commit once it is stored and the
  deduplication token that makes a retried insert idempotent
  (:func:`part_token` for a part of a batch split to isolate a refusal).

Imports nothing from Kafka or ClickHouse: a partition is anything with a
``topic`` and a ``partition`` (aiokafka's ``TopicPartition`` is one), and a
unit test builds batches from plain values.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.sink.settings import SinkSettings


class Partition(Protocol):
    """A Kafka topic partition (``aiokafka.TopicPartition`` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


def insert_due(
    settings: SinkSettings,
    *,
    rows: int,
    size: int,
    age_s: float,
    since_last_insert_s: float,
    caught_up: bool,
    after_full_batch: bool,
) -> bool:
    """Whether a pending batch should be inserted now; asked only when no insert is in flight.

    ``rows``/``size``: the batch's (estimated) events and bytes; ``age_s``: since
    its first message; ``since_last_insert_s``: since the previous insert
    started (infinite before the first); ``caught_up``: the last poll returned
    nothing; ``after_full_batch``: the previous insert was cut full (a backlog
    was being worked off).

    - full (``batch_max_rows`` or ``batch_max_bytes``) or older than
      ``batch_max_seconds``: now;
    - caught up right after a full batch: the tail of a backlog, now (once:
      the batch after it is not full);
    - otherwise at least ``batch_min_rows`` events (or caught up, for a
      trickle), and ``min_insert_interval_s * (1 - fill)`` since the previous
      insert started, ``fill`` being the batch's fraction of the maximum. A
      nearly full batch goes almost at once, a small one waits most of the
      interval: with events arriving at ``r``/s that is at most
      ``1/interval + r/batch_max_rows`` inserts per second, i.e. about one per
      second beyond what the maximum batch size forces anyway.
    """
    fill = max(rows / max(settings.batch_max_rows, 1), size / max(settings.batch_max_bytes, 1))
    if fill >= 1.0 or age_s >= settings.batch_max_seconds:
        return True
    if caught_up and after_full_batch:
        return True
    if rows < settings.batch_min_rows and not caught_up:
        return False
    return since_last_insert_s >= settings.min_insert_interval_s * (1.0 - fill)


def is_full(settings: SinkSettings, *, rows: int, size: int) -> bool:
    """A batch at the maximum rows or bytes: it goes now, and nothing more is fetched."""
    return rows >= settings.batch_max_rows or size >= settings.batch_max_bytes


@dataclass(slots=True)
class IncomingMessage:
    """One consumed message, ready to insert: its ``incoming_batches`` row."""

    record: Any  # the consumed Kafka record (for the DLQ if ClickHouse refuses it)
    row: tuple[Any, ...]
    events: int  # estimated
    bytes: int

    @property
    def offset(self) -> int:
        """The message's offset in its partition."""
        return int(self.record.offset)


def columns(messages: Sequence[IncomingMessage]) -> list[list[Any]]:
    """``incoming_batches`` columns of ``messages`` (column-oriented, one insert)."""
    rows = [m.row for m in messages]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


@dataclass
class PartitionBuffer:
    """Messages consumed from one partition and not yet inserted."""

    messages: list[IncomingMessage] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    refused: list[int] = field(default_factory=list)  # offsets sent to the DLQ after a refusal


@dataclass
class PendingBatch:
    """Everything consumed since the last flush, per partition."""

    partitions: dict[Partition, PartitionBuffer] = field(default_factory=dict)
    rows: int = 0
    bytes: int = 0
    started: float = 0.0
    # Partitions revoked while this batch was being inserted: their rows stay in
    # the insert (same token on retry) but their offsets are not committed.
    revoked: set[Partition] = field(default_factory=set)

    def add(self, tp: Partition, offset: int, message: IncomingMessage | None) -> None:
        """Record a consumed message (``message`` None: sent to the DLQ, only the offset counts)."""
        if not self.partitions:
            self.started = time.monotonic()
        buffer = self.partitions.setdefault(tp, PartitionBuffer(first_offset=offset))
        buffer.last_offset = offset
        if message is not None:
            buffer.messages.append(message)
            self.rows += message.events
            self.bytes += message.bytes

    def messages(self) -> list[IncomingMessage]:
        """Every buffered message, partition by partition."""
        return [m for buffer in self.partitions.values() for m in buffer.messages]

    def items(self) -> list[tuple[Partition, IncomingMessage]]:
        """Every buffered message with its partition, partition by partition."""
        return [(tp, m) for tp, buffer in self.partitions.items() for m in buffer.messages]

    def remove(self, tp: Partition, message: IncomingMessage) -> None:
        """Take out a message ClickHouse refused (its offset is still committed)."""
        buffer = self.partitions[tp]
        buffer.messages.remove(message)
        buffer.refused.append(message.offset)
        self.rows -= message.events
        self.bytes -= message.bytes

    def drop(self, revoked: Iterable[Partition]) -> int:
        """Forget revoked partitions (their new owner re-reads them from the committed offset)."""
        dropped = 0
        for tp in revoked:
            buffer = self.partitions.pop(tp, None)
            if buffer is not None:
                for message in buffer.messages:
                    dropped += message.events
                    self.rows -= message.events
                    self.bytes -= message.bytes
        return dropped

    def dedup_token(self) -> str:
        """Same consumed offsets (and refusals) → same token, so a retried insert is idempotent."""
        spec = ",".join(
            f"{tp.topic}/{tp.partition}/{b.first_offset}-{b.last_offset}"
            + "".join(f"-{offset}" for offset in b.refused)
            for tp, b in sorted(
                self.partitions.items(), key=lambda kv: (kv[0].topic, kv[0].partition)
            )
        )
        return hashlib.sha256(spec.encode()).hexdigest()

    def columns(self) -> list[list[Any]]:
        """``incoming_batches`` columns (column-oriented, one insert)."""
        return columns(self.messages())

    def commit_offsets(self) -> dict[Partition, int]:
        """The offsets to commit once this batch is stored: next to read, per partition."""
        return {
            tp: b.last_offset + 1 for tp, b in self.partitions.items() if tp not in self.revoked
        }


def part_token(batch_token: str, part: Sequence[tuple[Partition, IncomingMessage]]) -> str:
    """The token of one part of a split batch: same messages, same token (a retry is dropped)."""
    spec = ",".join(f"{tp.topic}/{tp.partition}/{m.offset}" for tp, m in part)
    return hashlib.sha256(f"{batch_token}:{spec}".encode()).hexdigest()
