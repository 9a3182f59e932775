"""Ingest gateway wiring: aiohttp routes, the Kafka producer, startup and shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.ingest import metrics
from services.ingest.batch import Rejection, parse_batch
from services.ingest.settings import IngestSettings
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from services.shared.logging import setup_logging
from services.shared.ops_http import add_ops_routes, start_site
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

log = logging.getLogger("replaypipe.ingest")

SETTINGS_KEY = web.AppKey("settings", IngestSettings)
REGISTRY_KEY = web.AppKey("registry", SiteRegistry)
PRODUCER_KEY = web.AppKey("producer", AIOKafkaProducer)


def error_response(rejection: Rejection) -> web.Response:
    """The JSON error body every refusal uses: ``{"error": code, "detail": sentence}``."""
    headers = {}
    if rejection.retry_after_s is not None:
        headers["Retry-After"] = str(rejection.retry_after_s)
    return web.json_response(
        {"error": rejection.code, "detail": rejection.detail},
        status=rejection.status,
        headers=headers,
    )


def _site_for(request: web.Request) -> SiteSettings:
    key = request.headers.get("X-Replaypipe-Key") or request.query.get("key")
    if not key:
        raise Rejection(401, "missing_site_key", "Send the site key as ?key= or X-Replaypipe-Key.")
    site = request.app[REGISTRY_KEY].by_public_key(key)
    if site is None:
        raise Rejection(401, "unknown_site_key", "The site key is not known to this server.")
    if not site.enabled:
        raise Rejection(403, "site_disabled", "Recording is disabled for this site.")
    return site


async def post_batch(request: web.Request) -> web.Response:
    """``POST /v1/recordings``: accept one batch, answer 202 once Kafka acknowledged it."""
    started = time.perf_counter()
    settings = request.app[SETTINGS_KEY]
    try:
        site = _site_for(request)
        body = await request.read()
        if len(body) > settings.max_body_bytes:
            raise Rejection(413, "body_too_large", f"Body over {settings.max_body_bytes} bytes.")
        envelope = parse_batch(
            body,
            site=site,
            now_ms=int(time.time() * 1000),
            max_events=settings.max_events_per_batch,
            max_skew_ms=settings.max_timestamp_skew_ms,
        )
        envelope.user_agent = request.headers.get("User-Agent", "")[:512]
        await _publish(request.app, envelope, settings.publish_timeout_s)
    except Rejection as rejection:
        metrics.REJECTIONS.labels(rejection.code).inc()
        metrics.REQUESTS.labels(str(rejection.status)).inc()
        return error_response(rejection)
    metrics.EVENTS.inc(len(envelope.events))
    metrics.BYTES.inc(len(body))
    metrics.REQUESTS.labels("202").inc()
    metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
    return web.json_response(
        {"status": "accepted", "seq": envelope.seq, "events": len(envelope.events)}, status=202
    )


async def _publish(app: web.Application, envelope: BatchEnvelope, timeout_s: float) -> None:
    producer = app[PRODUCER_KEY]
    key = topics.session_key(envelope.site_id, envelope.session_id)
    metrics.INFLIGHT.inc()
    try:
        await asyncio.wait_for(
            producer.send_and_wait(topics.RAW, envelope.to_json(), key=key), timeout_s
        )
    except (KafkaError, TimeoutError) as exc:
        metrics.PUBLISH_FAILURES.inc()
        log.warning(
            "kafka did not take the batch",
            extra={
                "site": envelope.site_id,
                "session": envelope.session_id,
                "reason": type(exc).__name__,
            },
        )
        raise Rejection(
            503, "kafka_unavailable", "The batch could not be stored; retry later.", 5
        ) from None
    finally:
        metrics.INFLIGHT.dec()


def build_app(settings: IngestSettings, registry: SiteRegistry) -> web.Application:
    """The aiohttp application (the producer is started in ``on_startup``)."""
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
    app[SETTINGS_KEY] = settings
    app[REGISTRY_KEY] = registry
    app.router.add_post("/v1/recordings", post_batch)

    async def ready() -> str | None:
        producer = app.get(PRODUCER_KEY)
        if producer is None:
            return "producer not started"
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 2.0)
        except Exception:
            return "kafka unreachable"
        return None

    add_ops_routes(app, ready)

    async def start_producer(app: web.Application) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            max_request_size=settings.kafka.max_message_bytes,
            request_timeout_ms=int(settings.publish_timeout_s * 1000),
        )
        await producer.start()
        app[PRODUCER_KEY] = producer

    async def stop_producer(app: web.Application) -> None:
        producer = app.get(PRODUCER_KEY)
        if producer is not None:
            await producer.stop()  # flushes what was accepted

    app.on_startup.append(start_producer)
    app.on_cleanup.append(stop_producer)
    return app


async def serve(settings: IngestSettings) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting, flush and close."""
    registry = SiteRegistry(load_sites_file(settings.sites_file))
    app = build_app(settings, registry)
    runner = await start_site(app, settings.host, settings.port)
    log.info("ingest listening", extra={"count": settings.port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("ingest shutting down")
    await runner.cleanup()


def main() -> None:
    """``replaypipe ingest``."""
    settings = IngestSettings.from_env()
    setup_logging("ingest", settings.log_level)
    asyncio.run(serve(settings))
