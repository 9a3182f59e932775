"""``/metrics``, ``/healthz`` and ``/readyz`` for every service (aiohttp), and its stop signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

ReadyCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, or a short reason why not."""


def add_ops_routes(app: web.Application, ready: ReadyCheck) -> None:
    """Add the Prometheus and Kubernetes probe endpoints to ``app``."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = await ready()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not_ready", "detail": reason}, status=503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller keeps the runner and calls ``cleanup()``."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT: a service runs until it is set, then shuts down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
