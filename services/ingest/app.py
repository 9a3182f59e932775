"""Ingest gateway wiring: aiohttp routes, the Kafka producer, startup and shutdown.

The checks themselves are pure functions in ``body.py`` (content type,
decompression), ``batch.py`` (the JSON batch), ``admission.py`` (rate limit,
sampling) and ``client.py`` (origin, IP address); this module only orders them,
publishes through ``producer.py`` (librdkafka), and turns a :class:`Rejection`
into a JSON answer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from services.ingest import metrics
from services.ingest.admission import SiteRateLimiter, retry_after_s, session_sampled_in
from services.ingest.batch import Rejection, check_message_size, parse_batch
from services.ingest.body import body_encoding, check_content_type, decode_body
from services.ingest.client import (
    anonymise_ip,
    client_address,
    cors_headers,
    origin_allowed,
    user_agent,
)
from services.ingest.producer import AsyncProducer, PublishError
from services.ingest.settings import IngestSettings
from services.ingest.tls import ReloadingCertificate
from services.shared import topics
from services.shared.errors import error_response as shared_error_response
from services.shared.kafka_security import librdkafka_config
from services.shared.keyring import RawSealer
from services.shared.logging import setup_logging
from services.shared.ops_http import add_ops_routes, stop_on_signals
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

log = logging.getLogger("replaypipe.ingest")

_JSON = "application/json"


class CycleCollectorPaused:
    """Keep Python's cycle collector from running during a synchronous step.

    Parsing a batch allocates thousands of dicts and lists at once, which
    triggers several collections that each walk every young object, although
    JSON parsed by orjson holds no reference cycles: it is freed by reference
    counting alone. The step must not await (the pause would cover other tasks).
    A class rather than ``contextlib.contextmanager``, which would set
    ``__traceback__`` on a passing :class:`Rejection` (a frozen dataclass).
    """

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *_: object) -> None:
        if self._was_enabled:
            gc.enable()


def error_response(rejection: Rejection, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every refusal uses: ``{"error": code, "detail": sentence}``."""
    return shared_error_response(
        rejection.status,
        rejection.code,
        rejection.detail,
        retry_after_s=rejection.retry_after_s,
        headers=headers,
    )


class Gateway:
    """The state of one ingest process: settings, sites, rate limits and the producer."""

    def __init__(self, settings: IngestSettings, registry: SiteRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.limiter = SiteRateLimiter()
        self.producer: AsyncProducer | None = None
        self.raw_sealer = RawSealer(settings.raw_encryption, settings.kafka)
        self.inflight = 0
        # Read when /metrics is scraped rather than set twice on every batch.
        metrics.INFLIGHT.set_function(lambda: self.inflight)
        metrics.PRODUCER_QUEUED.set_function(
            lambda: self.producer.queued() if self.producer is not None else 0
        )
        self._unavailable = Rejection(
            503,
            "kafka_unavailable",
            "The batch could not be stored right now; retry it after Retry-After seconds.",
            settings.retry_after_s,
        )

    # --- HTTP handlers -------------------------------------------------------

    async def post_batch(self, request: web.Request) -> web.Response:
        """``POST /v1/recordings``: answer 202 only once Kafka acknowledged the batch."""
        started = time.perf_counter()
        cors: dict[str, str] = {}
        try:
            site = self._site_for(request)
            origin = request.headers.get("Origin")
            if origin is not None:
                if not origin_allowed(origin, site.allowed_origins):
                    raise _origin_refused()
                cors = cors_headers(origin)
            self._admit(site)
            body = await self._read_body(request)
            encoding = body_encoding(
                request.headers.get("Content-Encoding", ""), request.query.get("enc", ""), body
            )
            decoded = decode_body(body, encoding, self.settings.max_decoded_bytes)
            with CycleCollectorPaused():
                parsed = parse_batch(
                    decoded,
                    site=site,
                    now_ms=int(time.time() * 1000),
                    max_events=self.settings.max_events_per_batch,
                    max_skew_ms=self.settings.max_timestamp_skew_ms,
                )
                envelope = parsed.envelope
                seq, event_count, dropped = envelope.seq, len(envelope.events), parsed.dropped
                session_id = envelope.session_id
                if not session_sampled_in(site.site_id, session_id, site.sample_rate):
                    metrics.SAMPLED_OUT.inc()
                    metrics.REQUESTS.labels("202").inc()
                    return _json(202, {"status": "sampled_out", "seq": seq}, cors)
                envelope.user_agent = user_agent(request.headers.get("User-Agent", ""))
                envelope.client_ip = anonymise_ip(
                    client_address(
                        request.remote,
                        request.headers.get("X-Forwarded-For", ""),
                        self.settings.trusted_proxy_hops,
                    ),
                    site.ip_mode,
                )
                value = envelope.to_json()
                # Let go of the parsed events before waiting for Kafka: held across the
                # wait, tens of batches' objects would be walked by every collection.
                del parsed, envelope
            check_message_size(len(value), self.settings.kafka.max_message_bytes)
            await self._publish(topics.session_key(site.site_id, session_id), value)
        except Rejection as rejection:
            metrics.REJECTIONS.labels(rejection.code).inc()
            metrics.REQUESTS.labels(str(rejection.status)).inc()
            return error_response(rejection, cors)
        for reason, count in dropped.items():
            metrics.DROPPED_EVENTS.labels(reason).inc(count)
        metrics.EVENTS.inc(event_count)
        metrics.BYTES.inc(len(body))
        metrics.ACCEPTED.inc()
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        return _json(202, {"status": "accepted", "seq": seq, "events": event_count}, cors)

    async def preflight(self, request: web.Request) -> web.Response:
        """``OPTIONS /v1/recordings``: the CORS preflight of a browser ``fetch``.

        A preflight carries no custom headers, so the site is known only from
        ``?key=``; without it, any origin some enabled site allows is let through
        (the POST itself is then checked against its own site).
        """
        origin = request.headers.get("Origin", "")
        key = request.query.get("key")
        if key:
            site = self.registry.by_public_key(key)
            allowed: list[str] = list(site.allowed_origins) if site and site.enabled else []
        else:
            allowed = [o for s in self.registry.all() if s.enabled for o in s.allowed_origins]
        if not origin or not origin_allowed(origin, allowed):
            rejection = _origin_refused()
            metrics.REJECTIONS.labels(rejection.code).inc()
            metrics.REQUESTS.labels(str(rejection.status)).inc()
            return error_response(rejection)
        metrics.REQUESTS.labels("204").inc()
        return web.Response(status=204, headers=cors_headers(origin, self.settings.cors_max_age_s))

    # --- steps -----------------------------------------------------------------

    def _site_for(self, request: web.Request) -> SiteSettings:
        key = request.headers.get("X-Replaypipe-Key") or request.query.get("key")
        if not key:
            raise Rejection(
                401,
                "missing_site_key",
                "Send the site key as ?key= or as the X-Replaypipe-Key header.",
            )
        site = self.registry.by_public_key(key)
        if site is None:
            raise Rejection(401, "unknown_site_key", "The site key is not known to this server.")
        if not site.enabled:
            raise Rejection(403, "site_disabled", "Recording is disabled for this site.")
        return site

    def _admit(self, site: SiteSettings) -> None:
        wait_s = self.limiter.wait_s(
            site.site_id, site.rate_limit_per_second, site.rate_limit_burst, time.monotonic()
        )
        if wait_s > 0:
            raise Rejection(
                429,
                "rate_limited",
                "This site sends more batches than its rate limit allows; retry after "
                "Retry-After seconds.",
                retry_after_s(wait_s),
            )
        # Refuse before reading the body: no memory is spent on a batch we cannot hold.
        if self.inflight >= self.settings.max_inflight_batches:
            raise Rejection(
                503,
                "overloaded",
                "The gateway holds as many batches as it may while Kafka acknowledges them; "
                "retry after Retry-After seconds.",
                1,
            )

    async def _read_body(self, request: web.Request) -> bytes:
        check_content_type(request.headers.get("Content-Type", ""))
        limit = self.settings.max_body_bytes
        too_large = Rejection(
            413, "body_too_large", f"The request body is over {limit} bytes; send smaller batches."
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        try:
            return await request.read()  # bounded by client_max_size (chunked bodies too)
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        except (HttpProcessingError, ConnectionError):
            # Broken chunk framing, or the client went away mid-body: its fault, not a 500.
            raise _MALFORMED_REQUEST from None

    async def _publish(self, key: bytes, value: bytes) -> None:
        producer = self.producer
        if producer is None:
            metrics.PUBLISH_FAILURES.inc()
            raise self._unavailable
        self.inflight += 1
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                # A timeout cancels only this record's future: the record stays queued
                # in the producer and may still land; the client hears 503 and the
                # sink dedups a retried batch.
                await producer.send(topics.RAW, await self.raw_sealer.seal(key, value), key)
        except PublishError as exc:
            if exc.too_large:
                raise Rejection(
                    413,
                    "batch_too_large",
                    "Kafka refused the batch as too large; send fewer events per batch.",
                ) from None
            metrics.PUBLISH_FAILURES.inc()
            log.warning("kafka did not take a batch", extra={"reason": exc.reason})
            raise self._unavailable from None
        except TimeoutError:
            metrics.PUBLISH_FAILURES.inc()
            log.warning("kafka did not take a batch", extra={"reason": "timeout"})
            raise self._unavailable from None
        finally:
            self.inflight -= 1

    # --- lifecycle -------------------------------------------------------------

    async def ready(self) -> str | None:
        """None when a publish can succeed now, else why not (``/readyz``)."""
        producer = self.producer
        if producer is None:
            return "kafka producer not started"
        if not await producer.metadata_ok(topics.RAW, 2.0):
            return "kafka unreachable"
        return None

    def producer_config(self) -> dict[str, object]:
        """librdkafka settings: the brokers and their TLS/SASL, durable (acks=all,
        idempotent), compressed, bounded."""
        s = self.settings
        return {
            **librdkafka_config(s.kafka),
            "client.id": "replaypipe-ingest",
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": s.compression,
            "compression.level": s.compression_level,
            "linger.ms": s.linger_ms,
            "batch.size": s.producer_batch_bytes,
            "message.max.bytes": s.kafka.max_message_bytes,
            # The Java client's (and aiokafka's) mapping: a session keeps its partition.
            "partitioner": "murmur2_random",
            # The memory bound of records waiting for Kafka, those answered 503 included.
            "queue.buffering.max.kbytes": s.producer_buffer_bytes // 1024,
            "retry.backoff.ms": 200,
            # Each POST waits for its ack: send small produce requests at once.
            "socket.nagle.disable": True,
            "topic.metadata.refresh.interval.ms": 60_000,
        }

    async def start_producer(self) -> None:
        """Start the producer; it connects in the background (posts get 503 until then)."""
        producer = AsyncProducer(self.producer_config())
        producer.start()
        self.producer = producer
        # Wait briefly so a healthy start is ready at once; a slow Kafka is retried.
        if await producer.metadata_ok(topics.RAW, min(5.0, self.settings.publish_timeout_s)):
            log.info("kafka producer started")
        else:
            log.warning("kafka not reachable at start; the producer keeps retrying")

    async def stop_producer(self) -> None:
        """Flush every accepted batch, then close (graceful shutdown)."""
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop(self.settings.publish_timeout_s)

    async def follow_sites(self) -> None:
        """Apply live site changes from ``sites.config`` (it reconnects when Kafka goes away)."""
        await follow_site_config(self.registry, self.settings.kafka)


GATEWAY_KEY = web.AppKey("gateway", Gateway)

_MALFORMED_REQUEST = Rejection(
    400,
    "malformed_request",
    "The request is not valid HTTP/1.1 (request line, a header, or the chunked body); "
    "check the client that sent it.",
)
_INTERNAL_ERROR = Rejection(
    500,
    "internal_error",
    "The gateway failed on this batch (a bug, logged without the request); retry it later.",
)


class _MessageWithheld(Exception):
    """Stands in for an exception's message in the log: it may quote the request."""


class PrivateRequestHandler(RequestHandler):
    """aiohttp's connection handler, without repeating what the client sent.

    For a request it cannot parse (bad request line, header or chunk framing)
    aiohttp answers its parser's message, which quotes the offending bytes —
    such as a query string with its site key — and logs that message, with the
    raw client address, at error level. Here the answer is the usual JSON error
    and the log names the exception's class only.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer when the request could not be parsed (400) or a handler failed."""
        if status < 500:
            metrics.REJECTIONS.labels(_MALFORMED_REQUEST.code).inc()
            log.info(
                "refused a request that is not valid HTTP",
                extra={"reason": type(exc).__name__ if exc else str(status)},
            )
            rejection = _MALFORMED_REQUEST
        else:
            self.log_exception("request failed", exc_info=exc)
            rejection = _INTERNAL_ERROR
        metrics.REQUESTS.labels(str(rejection.status)).inc()
        if request.writer.output_size > 0:
            # As aiohttp does: part of a response went out, the connection is broken.
            raise ConnectionError("a response was already being sent")
        response = error_response(rejection)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Log an error with its traceback (code lines only) and the exception's class."""
        exc = kw.get("exc_info")
        if not isinstance(exc, BaseException):
            log.error(str(args[0]) if args else "request handler error")
            return
        withheld = _MessageWithheld(f"the {type(exc).__name__}'s message is not logged")
        log.error(
            str(args[0]) if args else "request handler error",
            exc_info=(type(exc), withheld, exc.__traceback__),
        )


class _PrivateServer(web.Server):
    """aiohttp's server, making :class:`PrivateRequestHandler` connections."""

    def __call__(self) -> RequestHandler:
        return PrivateRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections never echo the client."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the app's startup
        return _PrivateServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )


def _origin_refused() -> Rejection:
    return Rejection(
        403,
        "origin_not_allowed",
        "This page's origin is not in the site's allowed_origins; add it in the site settings.",
    )


def _json(status: int, doc: dict[str, object], headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, headers=headers, content_type=_JSON)


def build_app(settings: IngestSettings, registry: SiteRegistry) -> web.Application:
    """The aiohttp application; the producer and the site feed start with it."""
    gateway = Gateway(settings, registry)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[GATEWAY_KEY] = gateway
    app.router.add_post("/v1/recordings", gateway.post_batch)
    app.router.add_route("OPTIONS", "/v1/recordings", gateway.preflight)
    add_ops_routes(app, gateway.ready)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await gateway.start_producer()
        await gateway.raw_sealer.start()
        tasks = [asyncio.create_task(gateway.follow_sites())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The HTTP side has stopped by now: flush every batch already accepted.
            await gateway.stop_producer()
            await gateway.raw_sealer.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


async def start_gateway(settings: IngestSettings, registry: SiteRegistry) -> web.AppRunner:
    """Start serving on ``settings.host:port`` (HTTPS when ``INGEST_TLS_*`` are set);
    ``await runner.cleanup()`` stops gracefully."""
    app = build_app(settings, registry)
    certificate = None
    if settings.tls_cert_file:
        certificate = ReloadingCertificate(settings.tls_cert_file, settings.tls_key_file)
        app.cleanup_ctx.append(_watching(certificate, settings.tls_reload_s))
        log.info("ingest serves HTTPS; its certificate is reloaded when the files change")
    # auto_decompress=False: bodies are inflated by decode_body, under a size limit.
    runner = GatewayRunner(
        app,
        access_log=None,
        handle_signals=False,
        auto_decompress=False,
        shutdown_timeout=settings.publish_timeout_s + 5,
    )
    await runner.setup()
    ssl_context = certificate.context if certificate is not None else None
    site = web.TCPSite(
        runner, settings.host, settings.port, reuse_address=True, ssl_context=ssl_context
    )
    await site.start()
    return runner


def _watching(
    certificate: ReloadingCertificate, interval_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that reloads ``certificate`` while the app runs."""

    async def watch(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(certificate.watch(interval_s))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return watch


async def serve(settings: IngestSettings) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting, flush and close."""
    registry = SiteRegistry(load_sites_file(settings.sites_file))
    stop = stop_on_signals()  # before starting: a stop while starting waits
    runner = await start_gateway(settings, registry)
    log.info("ingest listening", extra={"port": settings.port})
    await stop.wait()
    log.info("ingest shutting down")
    await runner.cleanup()


def main() -> None:
    """``replaypipe ingest``."""
    settings = IngestSettings.from_env()
    setup_logging("ingest", settings.log_level)
    if settings.event_loop == "uvloop":
        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))
