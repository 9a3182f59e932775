"""Sink wiring: migrations, the writer loop, the read API, startup and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.shared.logging import setup_logging
from services.shared.ops_http import add_ops_routes, start_site, stop_on_signals
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, load_sites_file
from services.sink.audit import AuditWriter, add_audit_routes
from services.sink.read_api import make_read_app
from services.sink.scoped_sql import add_scoped_sql_routes
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, run_migrations
from services.sink.viewer import add_viewer_routes
from services.sink.writer import EventWriter

log = logging.getLogger("replaypipe.sink")


async def serve(settings: SinkSettings) -> None:
    """Run until SIGTERM/SIGINT; then flush the pending batch, commit, close."""
    store = await asyncio.to_thread(
        ClickHouseStore.open,
        settings.clickhouse(),
        read_connections=settings.read_connections,
        analyst=settings.analyst_clickhouse(),
        analyst_connections=settings.sql_connections,
    )
    applied = await asyncio.to_thread(run_migrations, store.client)
    log.info("schema up to date", extra={"count": len(applied)})
    registry = SiteRegistry(load_sites_file(settings.sites_file))

    writer = EventWriter(settings, store, registry)
    await writer.start()

    app = make_read_app(store, registry, settings)
    add_viewer_routes(app)
    add_audit_routes(app)
    add_scoped_sql_routes(app)

    async def ready() -> str | None:
        return None if writer.consumer is not None else "consumer not started"

    add_ops_routes(app, ready)
    runner = await start_site(app, settings.host, settings.port)
    log.info("sink listening", extra={"port": settings.port})

    stop = stop_on_signals()
    writer_task = asyncio.create_task(writer.run())
    sites_task = asyncio.create_task(follow_site_config(registry, settings.kafka))
    audit = AuditWriter(store, settings.kafka, f"{settings.group_id}-audit")
    audit_task = asyncio.create_task(audit.run(stop))
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({writer_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    log.info("sink shutting down")
    await writer.stop()
    await writer_task  # flushes and commits; re-raises a writer crash
    stop.set()
    await audit_task
    sites_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sites_task
    await writer.close()
    await runner.cleanup()
    store.close()


def main() -> None:
    """``replaypipe sink``."""
    settings = SinkSettings.from_env()
    setup_logging("sink", settings.log_level)
    asyncio.run(serve(settings))
