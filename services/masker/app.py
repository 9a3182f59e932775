"""Masker wiring: a faust app that masks ``recordings.raw`` into ``recordings.masked``.

Per-session state lives in a changelog-backed faust Table keyed like the topic,
so a restarted or rebalanced worker recovers it. Processing guarantee:
at-least-once (the agent awaits the delivery of each masked batch before the
source offset can be committed; the sink is idempotent by
``(site, session, window, seq, index)``). Concurrency stays 1 (see DESIGN.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson
from aiohttp import web

from services.masker import metrics
from services.masker.rules import SessionMaskState, mask_batch
from services.masker.settings import MaskerSettings
from services.shared import topics
from services.shared.envelope import BatchEnvelope, EnvelopeError
from services.shared.logging import JsonLineFormatter
from services.shared.ops_http import add_ops_routes, start_site
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

log = logging.getLogger("replaypipe.masker")

STATE_PARTITION = "_p"
STATE_LAST_SEEN = "_t"


def mask_envelope(
    envelope: BatchEnvelope, state_doc: dict[str, Any] | None, site: SiteSettings
) -> tuple[BatchEnvelope, dict[str, Any], dict[str, int]]:
    """Mask one envelope given the session's stored state; returns the new state too."""
    state = SessionMaskState.from_dict(state_doc)
    result = mask_batch(envelope.events, state, site, envelope.consent)
    envelope.events = result.events
    return envelope, state.to_dict(), dict(result.counts)


def _broker_urls(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def create_app(settings: MaskerSettings) -> faust.App:
    """Build the faust app: topics, the state table, the masking agent and ops tasks."""
    registry = SiteRegistry(load_sites_file(settings.sites_file))
    partitions = settings.kafka.partitions
    app = faust.App(
        settings.app_id,
        broker=_broker_urls(settings.kafka.bootstrap_servers),
        store="memory://",
        datadir=settings.state_dir,
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        producer_acks=-1,
        producer_max_request_size=settings.kafka.max_message_bytes,
        producer_compression_type="lz4",
        consumer_max_fetch_size=settings.kafka.max_message_bytes * 2,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
    )
    raw = app.topic(
        topics.RAW,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    masked = app.topic(
        topics.MASKED,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    dlq = app.topic(topics.DLQ, key_serializer="raw", value_serializer="raw")
    state_table = app.Table(
        "session-mask-state",
        partitions=partitions,
        schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json"),
    )

    @app.agent(raw, concurrency=1)
    async def mask_recordings(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            key = event.key if isinstance(event.key, bytes) else b""
            try:
                envelope = BatchEnvelope.from_json(event.value)
            except EnvelopeError as exc:
                metrics.DROPPED.labels("bad_envelope").inc()
                headers = [("reason", str(exc).encode()), ("stage", b"masker")]
                fut = await dlq.send(key=key, value=event.value, headers=headers)
                await fut
                yield None
                continue
            site = registry.get(envelope.site_id) or SiteSettings(site_id=envelope.site_id)
            started = time.perf_counter()
            masked_envelope, new_state, counts = mask_envelope(envelope, state_table.get(key), site)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            new_state[STATE_PARTITION] = event.message.partition
            new_state[STATE_LAST_SEEN] = int(time.time())
            state_table[key] = new_state
            metrics.STATE_BYTES.observe(len(orjson.dumps(new_state)))
            for rule, count in counts.items():
                metrics.MASKED.labels(rule).inc(count)
            if masked_envelope.events:
                fut = await masked.send(key=key, value=masked_envelope.to_json())
                await fut  # delivered before this offset may be committed
            metrics.BATCHES.inc()
            metrics.EVENTS.inc(len(masked_envelope.events))
            metrics.LAST_EVENT.labels(envelope.site_id).set(envelope.received_at_ms / 1000)
            yield None

    @app.timer(interval=60.0)
    async def evict_idle_sessions() -> None:
        """Forget sessions idle longer than the timeout so memory stays bounded."""
        cutoff = time.time() - settings.session_idle_timeout_s
        stale = [
            (key, value)
            for key, value in list(state_table.data.items())
            if isinstance(value, dict) and value.get(STATE_LAST_SEEN, 0) < cutoff
        ]
        for key, value in stale:
            state_table.data.pop(key, None)
            partition = value.get(STATE_PARTITION)
            if isinstance(partition, int):
                state_table.send_changelog(partition, key, None)
        metrics.SESSIONS_IN_STATE.set(len(state_table.data))

    @app.task
    async def follow_sites() -> None:
        await follow_site_config(registry, settings.kafka.bootstrap_servers)

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

    _ = (mask_recordings, evict_idle_sessions, follow_sites, serve_ops)
    return app


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
