"""Live site settings: follow the compacted ``sites.config`` topic into a registry.

Every process reads the whole topic from the beginning (no consumer group), so
each replica of each service ends with the same settings, and keeps following it
(:mod:`services.shared.compacted_topic` does the reading).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaProducer

from services.shared import topics
from services.shared.compacted_topic import follow_compacted_topic
from services.shared.kafka_security import aiokafka_client_kwargs
from services.shared.site_settings import SiteRegistry, SiteSettings, SiteSettingsError

if TYPE_CHECKING:
    from services.shared.kafka import KafkaSettings

log = logging.getLogger("replaypipe.sites")


async def follow_site_config(
    registry: SiteRegistry,
    kafka: KafkaSettings,
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
    await follow_compacted_topic(
        topics.SITES_CONFIG,
        kafka,
        _site_config_applier(registry, on_update),
        stop=stop,
        logger=log,
        poll_ms=500,
        first_retry_s=first_retry_s,
        max_retry_s=max_retry_s,
    )


async def load_site_config(
    registry: SiteRegistry, kafka: KafkaSettings, *, timeout_s: float = 60.0
) -> None:
    """Apply ``sites.config`` to ``registry`` up to the topic's current end, once (the CLI).

    Raises ``TimeoutError`` when Kafka does not answer within ``timeout_s``.
    """
    caught_up = asyncio.Event()
    async with asyncio.timeout(timeout_s):
        await follow_compacted_topic(
            topics.SITES_CONFIG,
            kafka,
            _site_config_applier(registry, None),
            stop=caught_up,
            on_caught_up=caught_up.set,
            logger=log,
        )


def _site_config_applier(
    registry: SiteRegistry, on_update: Callable[[str, SiteSettings | None], None] | None
) -> Callable[[bytes, bytes | None, int], None]:
    def apply(key: bytes, value: bytes | None, offset: int) -> None:
        site_id = key.decode()
        try:
            settings = registry.apply_update(site_id, value)
        except (SiteSettingsError, orjson.JSONDecodeError) as exc:
            log.error("ignored bad site settings", extra={"site": site_id, "reason": str(exc)})
            return
        log.info("site settings updated", extra={"site": site_id})
        if on_update is not None:
            on_update(site_id, settings)

    return apply


async def publish_site_settings(kafka: KafkaSettings, settings: SiteSettings | str) -> None:
    """Publish one site's settings (or a tombstone, given only the site id) to ``sites.config``."""
    producer = AIOKafkaProducer(**aiokafka_client_kwargs(kafka), acks="all")
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
