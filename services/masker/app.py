"""Masker wiring: a faust app that masks ``recordings.raw`` into ``recordings.masked``.

Thin glue around the pure :func:`~services.masker.message.mask_message`:

- Per-session state lives in a changelog-backed faust Table keyed like the topic
  (``<site>:<session>``), so a restarted or rebalanced worker recovers it. A
  session with no state (never seen, evicted, lost) gets a fresh state, which
  masks every id-addressed value until the next full snapshot.
- Processing guarantee: at-least-once with an idempotent sink. The agent acks a
  source offset only when the masked batch built from it is acknowledged by
  Kafka (``acks=all``), and only once every earlier offset of its partition is
  acked too (:mod:`services.masker.ack_order`: faust's commit rule can skip an
  offset when acks come out of order); faust commits only contiguous acked
  offsets, so a crash at any point replays the unconfirmed batches and never
  skips one. Sends are pipelined (not awaited one by one). The sink deduplicates replays by
  ``(site, session, window, seq, idx)``. Concurrency stays 1 (see docs/architecture.md).
- Idle sessions are evicted by a timer (tombstone in the changelog), so memory
  stays bounded. Site settings come from ``SITES_FILE`` and live from ``sites.config``.

docs/masker-operations.md describes this for operators.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, cast

import aiokafka
import faust
from aiohttp import web
from aiohttp.typedefs import Handler
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TableT, TransportT

from services.masker import metrics
from services.masker.ack_order import AckInOrder
from services.masker.health import PartitionProgress, not_alive_reason, not_ready_reason
from services.masker.message import (
    STATE_PARTITION,
    MaskedBatch,
    Rejection,
    dlq_pointer,
    mask_message,
    rejection_for,
    stored_state,
)
from services.masker.policy import MaskPolicy
from services.masker.settings import MaskerSettings
from services.shared import topics
from services.shared.kafka_security import faust_broker_settings
from services.shared.keyring import RawOpener
from services.shared.logging import logging_config as shared_logging_config
from services.shared.ops_http import add_ops_routes, start_site
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

__all__ = ["create_app", "dlq_pointer", "main", "mask_message"]

log = logging.getLogger("replaypipe.masker")

STATE_TABLE = "session-mask-state"
# faust's "commit every N acks" set out of reach (it takes no "off").
COMMIT_EVERY_NEVER = 2**62


def warn_about_site_selectors(site_id: str, site: SiteSettings | None) -> None:
    """Log selectors the masker cannot parse (they fall back to masking everything)."""
    if site is None:
        return
    for problem in MaskPolicy.from_site(site).problems:
        log.warning(
            "site selector falls back to masking everything",
            extra={"site": site_id, "reason": problem},
        )


class _FetchTunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, its aiokafka consumer given the masker's fetch settings.

    faust fixes ``fetch_max_wait_ms`` (1.5 s) and leaves ``fetch_min_bytes`` at 1,
    so below saturation every fetch returns as soon as one record arrives: one
    fetch round trip and one hand-over between faust's threads per record, on
    ``recordings.raw`` and, for a standby, on the state changelog. Two workers
    sharing a rate each take half as many records per fetch, so the same events
    cost more fetches. Waiting up to ``MASKER_FETCH_MAX_WAIT_MS`` for
    ``MASKER_FETCH_MIN_BYTES`` bounds the fetches per worker instead.
    """

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        app = cast("MaskerFaustApp", self.app)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher (aiokafka 0.14).
        consumer._fetch_min_bytes = app.fetch_min_bytes
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        return consumer


class _FetchTunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _FetchTunedTransport(faust_aiokafka.Transport):
    Consumer = _FetchTunedConsumer


class MaskerFaustApp(faust.App):
    """A faust App whose worker consumer takes the masker's fetch settings."""

    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 1500

    def _new_transport(self) -> TransportT:
        return _FetchTunedTransport(self.conf.broker_consumer, self)


def faust_app(settings: MaskerSettings, app_id: str | None = None) -> faust.App:
    """A faust App with the masker's broker (and its TLS/SASL), producer, fetch and commit settings.

    Shared with the benchmark's pass-through agent so both run the same config.
    """
    app = MaskerFaustApp(
        app_id or settings.app_id,
        **faust_broker_settings(settings.kafka),
        store="memory://",
        datadir=settings.state_dir,
        web_enabled=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_request_size=settings.kafka.max_message_bytes,
        producer_compression_type=None if settings.compression == "none" else settings.compression,
        consumer_max_fetch_size=settings.kafka.max_message_bytes * 2,
        # Commit from faust's timer only: its fetch loop would also commit every
        # N acks, between taking a message and recording it as read, and a
        # rebalance that runs meanwhile has its seek back to the committed
        # offset overwritten, so the re-fetched messages are dropped and later
        # committed past (lost; tests/unit/test_masker_commit_timing.py).
        broker_commit_every=COMMIT_EVERY_NEVER,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        # A crashed worker's partitions move to a live one after this long (faust's
        # default is 60 s of standstill); heartbeats every 3 s keep a busy one in.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        table_standby_replicas=settings.standby_replicas,
    )
    app.fetch_min_bytes = settings.fetch_min_bytes
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app


def bytes_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    """A topic whose keys and values pass through as raw bytes."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def create_app(settings: MaskerSettings) -> faust.App:
    """Build the faust app: topics, the state table, the masking agent and ops tasks."""
    registry = SiteRegistry(load_sites_file(settings.sites_file))
    for site in registry.all():
        warn_about_site_selectors(site.site_id, site)
    partitions = settings.kafka.partitions
    app = faust_app(settings)
    raw = bytes_topic(app, topics.RAW, partitions)
    # key_type/value_type (not a Schema) pick the changelog serializers: raw bytes
    # both ways, so recovery reads back exactly what the agent stored.
    state_table = app.Table(STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes)
    worker = MaskerWorker(app, settings, registry, state_table)
    app.agent(raw, name="mask_recordings", concurrency=1)(worker.mask_recordings)
    app.timer(interval=settings.eviction_interval_s)(worker.evict_idle_sessions)
    app.timer(interval=settings.lag_interval_s)(worker.report_consumer_lag)
    app.task(worker.follow_data_keys)
    app.task(worker.follow_sites)
    app.task(worker.serve_ops)
    return app


class MaskerWorker:
    """The state the masker's agent, timers and tasks share, and those steps themselves.

    ``last_seen`` holds the last activity per session key (time, partition), so
    eviction need not parse every stored value; ``background`` keeps a reference
    to fire-and-forget futures until they finish.
    """

    def __init__(
        self,
        app: faust.App,
        settings: MaskerSettings,
        registry: SiteRegistry,
        state_table: TableT[bytes, bytes],
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.state_table = state_table
        self.last_seen: dict[bytes, tuple[float, int]] = {}
        self.background: set[asyncio.Future[None]] = set()
        self.mask_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mask-batch")
        self.agent_started = False
        self.agent_running = False
        self.batch_started: float | None = None  # monotonic time the current batch began
        self.progress = PartitionProgress(settings.stuck_after_s)
        self.acks: AckInOrder[faust.EventT[Any]] = AckInOrder(lambda event: event.ack())
        self.last_taken: dict[int, int] = {}  # partition -> offset of the last message taken
        self.raw_opener = RawOpener(settings.raw_encryption, settings.kafka)
        metrics.BATCH_RUNNING_SECONDS.set_function(self.batch_running_s)

    def batch_running_s(self) -> float:
        """How long the batch being masked now has taken so far; 0 between batches."""
        started = self.batch_started
        return 0.0 if started is None else time.monotonic() - started

    # --- the masking agent -------------------------------------------------------

    async def mask_recordings(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: mask every raw batch in order, ack each once its output is delivered."""
        self.agent_started = True
        self.agent_running = True
        metrics.AGENT_UP.set(1)
        # What the worker built to start (faust, aiokafka, the rules) lives as long
        # as it does: out of the collector's full passes, which would walk it again
        # and again (mask_message pauses the collector for the batches themselves).
        gc.freeze()
        try:
            # Manual acks: an offset becomes committable only when its output is delivered.
            manual_acks = cast("faust.Stream[bytes]", stream).noack()
            async for event in manual_acks.events():
                await self.mask_event(event)
        finally:
            self.agent_running = False
            metrics.AGENT_UP.set(0)

    async def mask_event(self, event: faust.EventT[Any]) -> None:
        """Mask one raw message and publish the result, or a DLQ pointer if it cannot be.

        Whatever goes wrong with one message (not an envelope, nested too deep,
        over the time budget, a bug in the rules) costs that message only: a
        pointer goes to the DLQ, its offset is committed, the partition moves on.
        """
        key = event.key if isinstance(event.key, bytes) else b""
        raw_value = event.value if isinstance(event.value, bytes) else b""
        partition = event.message.partition
        self.note_taken(event.message.tp, event.message.offset)
        self.acks.taken(partition, event.message.offset, event)
        started = time.perf_counter()
        self.batch_started = time.monotonic()
        try:
            raw_value = await self.raw_opener.open(key, raw_value)
            batch = await self.mask_off_the_loop_if_big(
                partial(
                    mask_message,
                    raw_value,
                    self.state_table.get(key),
                    self.registry,
                    partition=partition,
                    offset=event.message.offset,
                    sensitive_names=self.settings.sensitive_names,
                    budget_s=self.settings.batch_budget_s,
                ),
                len(raw_value),
            )
        except Exception as exc:  # any failure of one batch: a DLQ pointer, never a dead agent
            await self.send_pointer_to_dlq(event, key, rejection_for(exc))
            return
        finally:
            self.batch_started = None
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.last_seen[key] = (time.time(), partition)
        if batch.state is not None:
            # Only changes reach the changelog: most batches (moves, typing) leave
            # the node index as it was.
            self.state_table[key] = batch.state
            metrics.STATE_BYTES.observe(len(batch.state))
        for rule, count in batch.counts.items():
            metrics.MASKED.labels(rule).inc(count)
        if batch.dropped:
            metrics.DROPPED.labels("masking_rules").inc(batch.dropped)
        metrics.BATCHES.inc()
        metrics.LAST_EVENT.labels(batch.site_id).set(batch.received_at_ms / 1000)
        if batch.value is None:
            self.event_done(event)  # nothing to publish (all events dropped by consent/rules)
            return
        try:
            delivery = await self.publish(topics.MASKED, key, batch.value, None)
        except Exception as exc:  # refused before sending (e.g. over the record size limit)
            refused = Rejection("not_publishable", type(exc).__name__)
            await self.send_pointer_to_dlq(event, key, refused)
            return
        metrics.EVENTS.inc(batch.events)
        delivery.add_done_callback(partial(self.ack_when_delivered, event))

    def note_taken(self, tp: TP, offset: int) -> None:
        """Log when a partition's offsets do not follow on from the last one taken here.

        Normal after a rebalance: another worker masked the messages between, or
        this one replays from the committed offset. The first message taken after
        one should be the committed offset faust seeked to; one past it means
        messages this worker never saw (a warning: faust may commit past them).
        """
        previous = self.last_taken.get(tp.partition)
        self.last_taken[tp.partition] = offset
        if previous is not None and offset == previous + 1:
            return
        committed: dict[TP, int | None] = getattr(self.app.consumer, "_committed_offset", {})
        start = committed.get(tp)
        if start is not None and offset > start:
            log.warning(
                "raw messages skipped: the first one taken is past the committed offset",
                extra={"partition": tp.partition, "offset": offset, "count": offset - start},
            )
            return
        if previous is None:
            return  # this worker's first message of the partition, where it should be
        # count: messages between the two (negative: a replay of earlier ones)
        log.info(
            "raw offsets do not follow on from the last one taken here",
            extra={"partition": tp.partition, "offset": offset, "count": offset - previous - 1},
        )

    async def mask_off_the_loop_if_big(
        self, mask: Callable[[], MaskedBatch], size: int
    ) -> MaskedBatch:
        """Run ``mask`` here for a small batch, in the worker thread for a big one.

        The compiled core parses, masks and writes a batch with the GIL released,
        so in the thread the event loop (``/healthz``, ``/readyz``, ``/metrics``,
        the consumer's heartbeats) keeps running while a big batch is masked.
        Small batches stay on the loop: the hand-over costs more than they take.
        """
        if size < self.settings.thread_batch_bytes:
            return mask()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.mask_thread, mask)

    async def send_pointer_to_dlq(
        self, event: faust.EventT[Any], key: bytes, rejection: Rejection
    ) -> None:
        """Publish where the raw message is and why it was not masked; ack on delivery."""
        partition, offset = event.message.partition, event.message.offset
        if rejection.reason == "bad_envelope":
            metrics.DROPPED.labels("bad_envelope").inc()
        metrics.DLQ.labels(rejection.reason).inc()
        log.error(
            "raw batch not masked; a pointer to it goes to the DLQ",
            extra={"reason": rejection.reason, "partition": partition, "offset": offset},
        )
        # The same headers as the sink's DLQ records; the raw value is unmasked,
        # so only a pointer goes downstream (it stays in recordings.raw for its
        # retention, for investigation).
        headers = [
            ("reason", rejection.reason.encode()),
            ("detail", rejection.detail[:500].encode()),
            ("stage", b"masker"),
            ("source", f"{topics.RAW}/{partition}/{offset}".encode()),
        ]
        pointer = dlq_pointer(
            topics.RAW,
            partition,
            offset,
            rejection.detail if rejection.reason == "bad_envelope" else rejection.reason,
            detail=None if rejection.reason == "bad_envelope" else rejection.detail,
        )
        delivery = await self.publish(topics.DLQ, key, pointer, headers)
        delivery.add_done_callback(partial(self.ack_when_delivered, event))

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> asyncio.Future[Any]:
        """Queue one record; returns its delivery future."""
        # Straight to the app's producer (bytes in, no faust serializers or sensors).
        fut = await self.app.producer.send(topic, key, value, None, None, headers)
        return cast("asyncio.Future[Any]", fut)

    def ack_when_delivered(self, event: faust.EventT[Any], delivery: asyncio.Future[Any]) -> None:
        """Mark the source offset committable once Kafka has the masked batch."""
        if delivery.cancelled() or delivery.exception() is not None:
            # Never ack: the offset stays uncommitted, the batch is replayed on restart.
            reason = "cancelled" if delivery.cancelled() else type(delivery.exception()).__name__
            log.error("masked batch not delivered; stopping to replay it", extra={"reason": reason})
            failure = RuntimeError(f"delivery failed: {reason}")
            crash = asyncio.ensure_future(self.app.crash(failure))
            self.background.add(crash)
            crash.add_done_callback(self.background.discard)
            return
        self.event_done(event)

    def event_done(self, event: faust.EventT[Any]) -> None:
        """The message's output is in Kafka: ack it once every earlier one of its partition is."""
        self.acks.done(event.message.partition, event.message.offset)

    # --- timers ----------------------------------------------------------------------

    async def evict_idle_sessions(self) -> None:
        """Forget sessions idle longer than the timeout so memory stays bounded."""
        cutoff = time.time() - self.settings.session_idle_timeout_s
        store = self.state_table.data
        last_seen = self.last_seen
        for key in list(store.keys()):
            if key not in last_seen:
                # Recovered from the changelog after a (re)start: idle from now on.
                doc = stored_state(store[key]) or {}
                partition = doc.get(STATE_PARTITION)
                # An unreadable value gets no tombstone (-1: no partition owns it).
                last_seen[key] = (time.time(), partition if isinstance(partition, int) else -1)
        stale = [(key, seen) for key, seen in last_seen.items() if seen[0] < cutoff]
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topics.RAW}
        for key, (_, partition) in stale:
            del last_seen[key]
            if store.pop(key, None) is not None and partition in owned:
                # A tombstone, so a recovering worker forgets it too (and compaction
                # drops it). Not for a partition moved to another worker by a
                # rebalance: that worker owns the session's state now.
                self.state_table.send_changelog(partition, key, None)
        metrics.SESSIONS_IN_STATE.set(len(store))

    async def report_consumer_lag(self) -> None:
        """``replaypipe_masker_consumer_lag{partition}``: log end minus committed offset.

        Also ``replaypipe_masker_partition_stuck{partition}``: lag, and no commit
        for ``MASKER_STUCK_AFTER_S`` (readiness fails meanwhile).
        """
        offsets = await update_consumer_lag(self.app)
        now = time.monotonic()
        self.progress.keep_only(set(offsets))
        for partition, (end, committed) in offsets.items():
            stuck = self.progress.observe(partition, committed, end, now)
            metrics.PARTITION_STUCK.labels(str(partition)).set(1 if stuck else 0)
        metrics.SESSIONS_IN_STATE.set(len(self.state_table.data))

    # --- tasks -----------------------------------------------------------------------

    async def follow_data_keys(self) -> None:
        """Follow ``keys.raw``: the wrapped data keys that open sealed raw values."""
        await self.raw_opener.run()

    async def follow_sites(self) -> None:
        """Apply site settings published to ``sites.config`` without a restart."""
        await follow_site_config(
            self.registry,
            self.settings.kafka,
            on_update=warn_about_site_selectors,
        )

    async def serve_ops(self) -> None:
        """``/metrics``, ``/healthz`` and ``/readyz`` until the worker stops."""
        web_app = web.Application(middlewares=[self.liveness])
        add_ops_routes(web_app, self.ready)
        runner = await start_site(web_app, self.settings.host, self.settings.port)
        log.info("masker ops endpoints listening", extra={"port": self.settings.port})
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def ready(self) -> str | None:
        """None when ready, else why not (``/readyz``)."""
        if self.app.consumer is None:
            return "consumer not started"
        return not_ready_reason(
            agent_stopped=self.agent_stopped(),
            batch_running_s=self.batch_running_s(),
            budget_s=self.settings.batch_budget_s,
            stuck_partitions=self.progress.stuck,
            stuck_after_s=self.settings.stuck_after_s,
        )

    def agent_stopped(self) -> bool:
        """True once the masking agent has run and is no longer running."""
        return self.agent_started and not self.agent_running

    @web.middleware
    async def liveness(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """``/healthz`` fails (503) when the worker needs a restart; other paths pass on.

        A middleware, so the shared ops routes stay as they are for every service.
        """
        if request.path == "/healthz":
            reason = not_alive_reason(
                agent_stopped=self.agent_stopped(),
                batch_running_s=self.batch_running_s(),
                stuck_after_s=self.settings.stuck_after_s,
            )
            if reason is not None:
                return web.json_response({"status": "not_alive", "detail": reason}, status=503)
        return await handler(request)


async def update_consumer_lag(app: faust.App) -> dict[int, tuple[int, int]]:
    """Set the lag gauge for every assigned ``recordings.raw`` partition.

    Returns partition -> (end offset, committed offset).
    """
    consumer = app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic == topics.RAW]
    offsets: dict[int, tuple[int, int]] = {}
    if not assigned:
        return offsets
    highwaters = await cast("Awaitable[dict[Any, int]]", consumer.highwaters(*assigned))
    # faust keeps the offsets it committed; before the first commit, use the group's.
    committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
    for tp in assigned:
        end = highwaters.get(tp)
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            try:
                done = await consumer.position(tp) or 0
            except IllegalStateError:
                # Revoked by a rebalance since ``assignment()`` (another worker died or
                # joined): not ours to report; the next round sees the new assignment.
                continue
        metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(end - done, 0))
        offsets[tp.partition] = (end, done)
    return offsets


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig routing faust/mode logs through the shared JSON lines, repeats limited."""
    return shared_logging_config("masker", level)


def main() -> None:
    """``replaypipe masker``: run one faust worker until SIGTERM/SIGINT."""
    from faust.worker import Worker

    settings = MaskerSettings.from_env()
    app = create_app(settings)
    worker = Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
