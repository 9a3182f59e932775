"""The ``sites.config`` follower every service runs: it survives a broker that is not there yet."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from services.dev.kafka_broker import free_port
from services.shared.kafka import KafkaSettings
from services.shared.site_feed import follow_site_config, publish_site_settings
from services.shared.site_settings import SiteRegistry, SiteSettings
from tests.conftest import start_broker_on

pytestmark = pytest.mark.integration


async def _wait_for(condition: object, timeout_s: float) -> bool:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_feed_started_before_its_broker_applies_settings_once_the_broker_is_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    registry = SiteRegistry([])
    stop = asyncio.Event()
    feed = asyncio.create_task(
        follow_site_config(
            registry,
            KafkaSettings(f"127.0.0.1:{port}"),
            stop=stop,
            first_retry_s=0.2,
            max_retry_s=1.0,
        )
    )
    with caplog.at_level(logging.WARNING, logger="replaypipe.sites"):
        await asyncio.sleep(1.0)
    retries = [r for r in caplog.records if r.getMessage() == "sites.config not readable; retrying"]
    assert retries and not feed.done()

    broker = await asyncio.to_thread(start_broker_on, tmp_path / "kafka", port)
    try:
        await publish_site_settings(broker.kafka_settings, SiteSettings(site_id="late"))
        assert await _wait_for(lambda: registry.get("late") is not None, timeout_s=30)
    finally:
        stop.set()
        await asyncio.wait_for(feed, 10)
        await asyncio.to_thread(broker.stop)


async def test_the_feed_stops_while_waiting_to_retry() -> None:
    stop = asyncio.Event()
    feed = asyncio.create_task(
        follow_site_config(
            SiteRegistry([]),
            KafkaSettings(f"127.0.0.1:{free_port()}"),
            stop=stop,
            first_retry_s=30.0,
        )
    )
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(feed, 2)
