"""Live site settings: follow the compacted ``sites.config`` topic into a registry.

Every process reads the whole topic from the beginning (no consumer group), so
each replica of each service ends with the same settings, and keeps following it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.shared import topics
from services.shared.site_settings import SiteRegistry, SiteSettings, SiteSettingsError

log = logging.getLogger("replaypipe.sites")


async def follow_site_config(
    registry: SiteRegistry,
    bootstrap_servers: str,
    *,
    on_update: Callable[[str, SiteSettings | None], None] | None = None,
    stop: asyncio.Event | None = None,
    first_retry_s: float = 1.0,
    max_retry_s: float = 30.0,
) -> None:
    """Apply every ``sites.config`` record to ``registry`` until cancelled or ``stop`` is set.

    When Kafka cannot be reached the feed waits (``first_retry_s``, doubling up to
    ``max_retry_s``) and reads the topic again from the beginning, so a service
    started before its broker, or cut off from it, catches up instead of keeping
    stale settings. The registry keeps the settings it has meanwhile.
    """
    delay_s = first_retry_s
    attempt = 0
    while stop is None or not stop.is_set():
        attempt += 1
        try:
            await _apply_site_config(registry, bootstrap_servers, on_update, stop)
            return
        except KafkaError as exc:
            log.warning(
                "sites.config not readable; retrying",
                extra={
                    "reason": type(exc).__name__,
                    "attempt": attempt,
                    "delay_s": delay_s,
                },
            )
        if stop is None:
            await asyncio.sleep(delay_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
        delay_s = min(delay_s * 2, max_retry_s)


async def _apply_site_config(
    registry: SiteRegistry,
    bootstrap_servers: str,
    on_update: Callable[[str, SiteSettings | None], None] | None,
    stop: asyncio.Event | None,
) -> None:
    consumer = AIOKafkaConsumer(
        topics.SITES_CONFIG,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key is None:
                        continue
                    site_id = record.key.decode()
                    try:
                        settings = registry.apply_update(site_id, record.value)
                    except (SiteSettingsError, orjson.JSONDecodeError) as exc:
                        log.error(
                            "ignored bad site settings", extra={"site": site_id, "reason": str(exc)}
                        )
                        continue
                    log.info("site settings updated", extra={"site": site_id})
                    if on_update is not None:
                        on_update(site_id, settings)
    finally:
        await consumer.stop()


async def publish_site_settings(bootstrap_servers: str, settings: SiteSettings | str) -> None:
    """Publish one site's settings (or a tombstone, given only the site id) to ``sites.config``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        if isinstance(settings, str):
            await producer.send_and_wait(topics.SITES_CONFIG, None, key=settings.encode())
        else:
            await producer.send_and_wait(
                topics.SITES_CONFIG,
                orjson.dumps(settings.to_dict()),
                key=settings.site_id.encode(),
            )
    finally:
        await producer.stop()
