"""Follow a compacted Kafka topic from its beginning, for as long as the process runs.

``sites.config``, ``keys.raw`` and ``console.state`` are read this way: no
consumer group, so every replica of every service reads every record and ends
with the same state; a broker that is away (or not up yet) is waited for with a
doubling backoff and the topic is read again from the beginning, so a follower
catches up instead of keeping stale state. What a record means is the
caller's ``apply``; this module only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.shared.kafka_security import aiokafka_client_kwargs

if TYPE_CHECKING:
    from services.shared.kafka import KafkaSettings

# apply(key, value, offset): one record; ``value`` is None for a tombstone.
# Records without a key are skipped: a compacted topic's key is its identity.
ApplyRecord = Callable[[bytes, bytes | None, int], None]

_log = logging.getLogger("replaypipe.compacted_topic")
# How soon a topic created (or grown) after the follower started is seen; one
# small metadata request per follower this often (aiokafka's default is 5 min).
METADATA_REFRESH_MS = 5_000


class CompactedTopicFollower:
    """Reads one compacted topic into the caller's ``apply``; reconnects when Kafka goes away.

    Besides :meth:`run`, it tells how far it has read (:meth:`end_offsets`,
    :meth:`has_read_to`, :meth:`wait_for_progress`), for a caller that must know
    whether a record published before now has been applied (``keys.raw``).
    """

    def __init__(
        self,
        topic: str,
        kafka: KafkaSettings,
        *,
        logger: logging.Logger = _log,
        poll_ms: int = 250,
        first_retry_s: float = 1.0,
        max_retry_s: float = 30.0,
    ) -> None:
        self.topic = topic
        self.kafka = kafka
        self.poll_ms = poll_ms
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._log = logger
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[int, int] = {}  # partition -> next offset to apply
        self._progress = asyncio.Event()
        self._caught_up = False
        self._polled = False  # whether the current connection has polled once

    async def run(
        self,
        apply: ApplyRecord,
        *,
        stop: asyncio.Event | None = None,
        on_caught_up: Callable[[], None] | None = None,
        after_poll: Callable[[], None] | None = None,
    ) -> None:
        """Apply every record until cancelled or ``stop`` is set.

        ``on_caught_up`` is called once, when the end offsets seen on connecting
        are reached (records published meanwhile are not waited for);
        ``after_poll`` after every poll, records or not (housekeeping that must
        run while the topic is quiet).
        """
        delay_s = self.first_retry_s
        attempt = 0
        while stop is None or not stop.is_set():
            attempt += 1
            self._polled = False
            try:
                await self._read(apply, stop, on_caught_up, after_poll)
                return
            except KafkaError as exc:
                if self._polled:  # it was up: a new outage starts from the first delay
                    delay_s, attempt = self.first_retry_s, 1
                self._log.warning(
                    "%s not readable; retrying",
                    self.topic,
                    extra={"reason": type(exc).__name__, "attempt": attempt, "delay_s": delay_s},
                )
            if stop is None:
                await asyncio.sleep(delay_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, self.max_retry_s)

    async def _read(
        self,
        apply: ApplyRecord,
        stop: asyncio.Event | None,
        on_caught_up: Callable[[], None] | None,
        after_poll: Callable[[], None] | None,
    ) -> None:
        # Subscribed, not assigned: without a group every partition is ours, and a
        # topic created after the start (or given more partitions) is picked up.
        # No committed offsets, so "earliest" is the beginning of every partition.
        consumer = AIOKafkaConsumer(
            **aiokafka_client_kwargs(self.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=METADATA_REFRESH_MS,
        )
        # Read again from the beginning: nothing counts as read until polled.
        self._positions = {}
        try:
            await consumer.start()
            consumer.subscribe([self.topic])
            self._consumer = consumer
            ends: dict[int, int] | None = None
            while stop is None or not stop.is_set():
                batches = await consumer.getmany(timeout_ms=self.poll_ms)
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            apply(record.key, record.value, record.offset)
                # Positions, not the last record's offset: compaction may have
                # removed the records just before the end.
                assigned = consumer.assignment()
                for tp in assigned:
                    self._positions[tp.partition] = await consumer.position(tp)
                self._polled = True
                if after_poll is not None:
                    after_poll()
                self._notify()
                if on_caught_up is None or self._caught_up or not assigned:
                    continue
                if ends is None:
                    ends = await self.end_offsets()
                if ends is not None and self.has_read_to(ends):
                    self._caught_up = True
                    on_caught_up()
        finally:
            self._consumer = None
            await consumer.stop()

    async def end_offsets(self) -> dict[int, int] | None:
        """The topic's end offsets now, by partition; None until connected and assigned."""
        consumer = self._consumer
        partitions = [] if consumer is None else list(consumer.assignment())
        if consumer is None or not partitions:
            return None
        try:
            ends = await consumer.end_offsets(partitions)
        except KafkaError:
            return None
        return {tp.partition: offset for tp, offset in ends.items()}

    def has_read_to(self, ends: dict[int, int]) -> bool:
        """Whether every record before ``ends`` (partition -> offset) has been applied."""
        return all(self._positions.get(p, -1) >= end for p, end in ends.items())

    async def wait_for_progress(self, timeout_s: float) -> None:
        """Return after the next poll, or after ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout_s)

    def _notify(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()


async def follow_compacted_topic(
    topic: str,
    kafka: KafkaSettings,
    apply: ApplyRecord,
    *,
    stop: asyncio.Event | None = None,
    on_caught_up: Callable[[], None] | None = None,
    logger: logging.Logger = _log,
    poll_ms: int = 250,
    first_retry_s: float = 1.0,
    max_retry_s: float = 30.0,
) -> None:
    """Apply every record of ``topic`` (from its beginning) until cancelled or ``stop`` is set.

    See :class:`CompactedTopicFollower`; ``logger`` names the follower in the
    retry warnings (``"<topic> not readable; retrying"``).
    """
    follower = CompactedTopicFollower(
        topic,
        kafka,
        logger=logger,
        poll_ms=poll_ms,
        first_retry_s=first_retry_s,
        max_retry_s=max_retry_s,
    )
    await follower.run(apply, stop=stop, on_caught_up=on_caught_up)
