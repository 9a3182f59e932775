"""Masker wiring: a faust app that masks ``recordings.raw`` into ``recordings.masked``.

Thin glue around the pure rules in :mod:`services.masker.rules`:

- Per-session state lives in a changelog-backed faust Table keyed like the topic
  (``<site>:<session>``), so a restarted or rebalanced worker recovers it. A
  session with no state (never seen, evicted, lost) gets a fresh state, which
  masks every id-addressed value until the next full snapshot.
- Processing guarantee: at-least-once with an idempotent sink. The agent acks a
  source offset only when the masked batch built from it is acknowledged by
  Kafka (``acks=all``); faust commits only contiguous acked offsets, so a crash
  at any point replays the unconfirmed batches and never skips one. Sends are
  pipelined (not awaited one by one). The sink deduplicates replays by
  ``(site, session, window, seq, idx)``. Concurrency stays 1 (see DESIGN.md).
- Idle sessions are evicted by a timer (tombstone in the changelog), so memory
  stays bounded. Site settings come from ``SITES_FILE`` and live from ``sites.config``.

docs/masker-operations.md describes this for operators.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
import orjson
from aiohttp import web

from services.masker import metrics
from services.masker.rules import MaskPolicy, SessionMaskState, mask_batch
from services.masker.settings import MaskerSettings
from services.shared import topics
from services.shared.envelope import BatchEnvelope, EnvelopeError
from services.shared.keyring import RawOpener
from services.shared.logging import JsonLineFormatter
from services.shared.ops_http import add_ops_routes, start_site
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

log = logging.getLogger("replaypipe.masker")

STATE_TABLE = "session-mask-state"
# Bookkeeping keys stored next to the rules' state in each table value: the
# partition (for eviction tombstones) and the source offset of the last batch
# that changed the state (to recognise a replay whose state is already ahead).
STATE_PARTITION = "_p"
STATE_OFFSET = "_o"
REPLAY_RULE = "replayed_batch"


@dataclass(slots=True)
class MaskedBatch:
    """What one raw message becomes: the value to publish (or None) and the new state.

    ``state`` is None when the stored state must stay as it is (unchanged, or a replay).
    """

    value: bytes | None
    events: int
    state: bytes | None
    counts: dict[str, int]
    dropped: int
    site_id: str
    received_at_ms: int


def dlq_pointer(topic: str, partition: int, offset: int, reason: str) -> bytes:
    """The DLQ value for a raw message the masker cannot read: where it is, not what it is.

    Nothing unmasked may be published downstream of the masker, so the value of
    an unreadable ``recordings.raw`` message is never copied to ``recordings.dlq``.
    """
    return orjson.dumps(
        {
            "stage": "masker",
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
        }
    )


def warn_about_site_selectors(site_id: str, site: SiteSettings | None) -> None:
    """Log selectors the masker cannot parse (they fall back to masking everything)."""
    if site is None:
        return
    for problem in MaskPolicy.from_site(site).problems:
        log.warning(
            "site selector falls back to masking everything",
            extra={"site": site_id, "reason": problem},
        )


def mask_message(
    raw_value: bytes,
    state_value: bytes | None,
    registry: SiteRegistry,
    *,
    partition: int,
    offset: int,
    sensitive_names: tuple[str, ...] | None = None,
) -> MaskedBatch:
    """Mask one ``recordings.raw`` value given the session's stored state (pure; no IO).

    A message at or before the offset that last changed the stored state is a
    replay after a crash: that state already includes later batches (a newer page,
    say, where a node id means something else), so the batch is masked from an
    empty state instead, i.e. conservatively, and the stored state is kept.
    Raises :class:`EnvelopeError` for a value that is not a valid envelope.
    """
    envelope = BatchEnvelope.from_json(raw_value)
    site = registry.get(envelope.site_id) or SiteSettings(site_id=envelope.site_id)
    loaded = orjson.loads(state_value) if state_value else None
    doc: dict[str, Any] | None = loaded if isinstance(loaded, dict) else None
    replay = (
        doc is not None
        and doc.get(STATE_PARTITION) == partition
        and offset <= doc.get(STATE_OFFSET, -1)
    )
    state = SessionMaskState.from_dict(None if replay else doc)
    before = state.to_dict()
    result = mask_batch(
        envelope.events, state, site, envelope.consent, sensitive_names=sensitive_names
    )
    envelope.events = result.events
    # The page URL travels outside the events (the recorder sends location.href):
    # scrub it like a meta event's href; other envelope extras are not forwarded.
    if envelope.page_url:
        policy = MaskPolicy.from_site(site, sensitive_names)
        envelope.page_url = policy.scrubber.scrub_url(envelope.page_url, result.counts)
    envelope.extra = {}
    counts = dict(result.counts)
    new_state: bytes | None = None
    if replay:
        counts[REPLAY_RULE] = 1
    else:
        after = state.to_dict()
        if after != before or doc is None:
            after[STATE_PARTITION] = partition
            after[STATE_OFFSET] = offset
            new_state = orjson.dumps(after)
    return MaskedBatch(
        value=envelope.to_json() if result.events else None,
        events=len(result.events),
        state=new_state,
        counts=counts,
        dropped=result.dropped,
        site_id=envelope.site_id,
        received_at_ms=envelope.received_at_ms,
    )


def _broker_urls(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def faust_app(settings: MaskerSettings, app_id: str | None = None) -> faust.App:
    """A faust App with the masker's broker, producer and commit settings.

    Shared with the benchmark's pass-through agent so both run the same config.
    """
    return faust.App(
        app_id or settings.app_id,
        broker=_broker_urls(settings.kafka.bootstrap_servers),
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
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        # A crashed worker's partitions move to a live one after this long (faust's
        # default is 60 s of standstill); heartbeats every 3 s keep a busy one in.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )


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
    # Last activity per session key, so eviction need not parse every stored value.
    last_seen: dict[bytes, tuple[float, int]] = {}
    background: set[asyncio.Future[None]] = set()
    raw_opener = RawOpener(settings.raw_encryption, settings.kafka.bootstrap_servers)

    def ack_when_delivered(event: faust.EventT[Any], delivery: asyncio.Future[Any]) -> None:
        """Mark the source offset committable once Kafka has the masked batch."""
        if delivery.cancelled() or delivery.exception() is not None:
            # Never ack: the offset stays uncommitted, the batch is replayed on restart.
            reason = "cancelled" if delivery.cancelled() else type(delivery.exception()).__name__
            log.error("masked batch not delivered; stopping to replay it", extra={"reason": reason})
            crash = asyncio.ensure_future(app.crash(RuntimeError(f"delivery failed: {reason}")))
            background.add(crash)
            crash.add_done_callback(background.discard)
            return
        event.ack()

    async def publish(
        topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> asyncio.Future[Any]:
        # Straight to the app's producer (bytes in, no faust serializers or sensors);
        # returns the delivery future once the record is queued.
        fut = await app.producer.send(topic, key, value, None, None, headers)
        return cast("asyncio.Future[Any]", fut)

    @app.agent(raw, concurrency=1)
    async def mask_recordings(stream: faust.StreamT[bytes]) -> None:
        # Manual acks: an offset becomes committable only when its output is delivered.
        manual_acks = cast("faust.Stream[bytes]", stream).noack()
        async for event in manual_acks.events():
            key = event.key if isinstance(event.key, bytes) else b""
            raw_value = event.value if isinstance(event.value, bytes) else b""
            partition = event.message.partition
            started = time.perf_counter()
            try:
                batch = mask_message(
                    await raw_opener.open(key, raw_value),
                    state_table.get(key),
                    registry,
                    partition=partition,
                    offset=event.message.offset,
                    sensitive_names=settings.sensitive_names,
                )
            except EnvelopeError as exc:
                metrics.DROPPED.labels("bad_envelope").inc()
                headers = [("reason", str(exc).encode()), ("stage", b"masker")]
                # The raw value is unmasked: only a pointer to it goes downstream
                # (it stays in recordings.raw for its retention, for investigation).
                pointer = dlq_pointer(topics.RAW, partition, event.message.offset, str(exc))
                delivery = await publish(topics.DLQ, key, pointer, headers)
                delivery.add_done_callback(partial(ack_when_delivered, event))
                continue
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            last_seen[key] = (time.time(), partition)
            if batch.state is not None:
                # Only changes reach the changelog: most batches (moves, typing) leave
                # the node index as it was.
                state_table[key] = batch.state
                metrics.STATE_BYTES.observe(len(batch.state))
            for rule, count in batch.counts.items():
                metrics.MASKED.labels(rule).inc(count)
            if batch.dropped:
                metrics.DROPPED.labels("masking_rules").inc(batch.dropped)
            metrics.BATCHES.inc()
            metrics.LAST_EVENT.labels(batch.site_id).set(batch.received_at_ms / 1000)
            if batch.value is None:
                event.ack()  # nothing to publish (all events dropped by consent/rules)
                continue
            metrics.EVENTS.inc(batch.events)
            delivery = await publish(topics.MASKED, key, batch.value, None)
            delivery.add_done_callback(partial(ack_when_delivered, event))

    @app.timer(interval=settings.eviction_interval_s)
    async def evict_idle_sessions() -> None:
        """Forget sessions idle longer than the timeout so memory stays bounded."""
        cutoff = time.time() - settings.session_idle_timeout_s
        store = state_table.data
        for key in list(store.keys()):
            if key not in last_seen:
                # Recovered from the changelog after a (re)start: idle from now on.
                doc = orjson.loads(store[key])
                last_seen[key] = (time.time(), int(doc[STATE_PARTITION]))
        stale = [(key, seen) for key, seen in last_seen.items() if seen[0] < cutoff]
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.RAW}
        for key, (_, partition) in stale:
            del last_seen[key]
            if store.pop(key, None) is not None and partition in owned:
                # A tombstone, so a recovering worker forgets it too (and compaction
                # drops it). Not for a partition moved to another worker by a
                # rebalance: that worker owns the session's state now.
                state_table.send_changelog(partition, key, None)
        metrics.SESSIONS_IN_STATE.set(len(store))

    @app.timer(interval=settings.lag_interval_s)
    async def report_consumer_lag() -> None:
        """``replaypipe_masker_consumer_lag{partition}``: log end minus committed offset."""
        await update_consumer_lag(app)
        metrics.SESSIONS_IN_STATE.set(len(state_table.data))

    @app.task
    async def follow_data_keys() -> None:
        await raw_opener.run()

    @app.task
    async def follow_sites() -> None:
        await follow_site_config(
            registry, settings.kafka.bootstrap_servers, on_update=warn_about_site_selectors
        )

    @app.task
    async def serve_ops() -> None:
        web_app = web.Application()

        async def ready() -> str | None:
            return None if app.consumer is not None else "consumer not started"

        add_ops_routes(web_app, ready)
        runner = await start_site(web_app, settings.host, settings.port)
        log.info("masker ops endpoints listening", extra={"count": settings.port})
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    _ = (mask_recordings, evict_idle_sessions, report_consumer_lag, follow_sites, serve_ops)
    _ = follow_data_keys
    return app


async def update_consumer_lag(app: faust.App) -> None:
    """Set the lag gauge for every assigned ``recordings.raw`` partition."""
    consumer = app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic == topics.RAW]
    if not assigned:
        return
    highwaters = await cast("Awaitable[dict[Any, int]]", consumer.highwaters(*assigned))
    # faust keeps the offsets it committed; before the first commit, use the group's.
    committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
    for tp in assigned:
        end = highwaters.get(tp)
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = await consumer.position(tp) or 0
        metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(end - done, 0))


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig routing faust/mode logs through our JSON-lines formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter, "service": "masker"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "faust", "mode", "kafka")},
    }


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
