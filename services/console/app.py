"""Console wiring: the site owners' control plane (login, roles, settings, tokens, audit).

Its own aiohttp service (port 8083), stateless: accounts, memberships, login
sessions, API tokens and the settings history live on the compacted topic
``console.state`` (services/console/state.py), site settings on ``sites.config``,
recordings and the audit log in ClickHouse behind the sink's read API.
docs/console.md explains the choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from itsdangerous import URLSafeTimedSerializer

from services.console import metrics
from services.console.account_pages import add_account_routes
from services.console.context import CONSOLE_KEY, Console
from services.console.passwords import PasswordPolicy
from services.console.settings import ConsoleSettings
from services.console.site_pages import add_site_routes
from services.console.state import ConsoleState, sha256_hex, touched
from services.console.state_feed import StateStore
from services.console.throttle import LoginThrottle
from services.console.web_auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    SESSION_KEY,
    USER_KEY,
    CsrfSigner,
    csrf_binding,
)
from services.shared.logging import setup_logging
from services.shared.ops_http import add_ops_routes, start_site, stop_on_signals
from services.shared.site_feed import follow_site_config
from services.shared.site_settings import SiteRegistry, load_sites_file
from services.sink.viewer import bundle as viewer_bundle

log = logging.getLogger("replaypipe.console")

HERE = Path(__file__).resolve().parent
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# The idle clock is written back to console.state at most this often per session.
TOUCH_INTERVAL_S = 60.0
# Ended sessions are tombstoned (and throttle counters pruned) this often.
SWEEP_INTERVAL_S = 300.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the login session from its cookie; refuse state changes without a CSRF token."""
    console = request.app[CONSOLE_KEY]
    settings = console.settings
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        now_ms = console.now_ms()
        state = console.store.state
        session = state.live_session(
            sha256_hex(cookie),
            now_ms,
            idle_ms=int(settings.session_idle_s * 1000),
            absolute_ms=int(settings.session_absolute_s * 1000),
        )
        if session is not None:
            request[SESSION_KEY] = session
            request[USER_KEY] = state.accounts[session.email]
            touch_ms = min(TOUCH_INTERVAL_S, settings.session_idle_s / 4) * 1000
            if now_ms - session.last_seen_ms >= touch_ms:
                await console.store.put(touched(session, now_ms))
    if request.method not in SAFE_METHODS:
        token = request.headers.get(CSRF_HEADER, "")
        if not token and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            token = str((await request.post()).get(CSRF_FIELD, ""))
        if not console.csrf.valid(token, csrf_binding(request)):
            metrics.CSRF_REFUSED.inc()
            return web.Response(
                status=403,
                text="This form has expired or did not come from the console. "
                "Reload the page and submit it again.",
            )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # The gates raise redirects and refusals; they get the same headers.
        _add_page_headers(exc)
        raise
    _add_page_headers(response)
    return response


def _add_page_headers(response: web.StreamResponse) -> None:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)


def format_utc_ms(ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` (UTC) for the pages."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


async def static_css(_: web.Request) -> web.FileResponse:
    """``GET /static/console.css``."""
    return web.FileResponse(HERE / "static" / "console.css")


def make_console_app(console: Console) -> web.Application:
    """The console's aiohttp application (the caller adds ops routes and starts the Console)."""
    app = web.Application(middlewares=[session_middleware])
    app[CONSOLE_KEY] = console
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        # Every value is escaped unless a template says otherwise (none does).
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters={"utc": format_utc_ms},
    )
    add_account_routes(app)
    add_site_routes(app)
    app.router.add_get("/static/console.css", static_css)
    app.router.add_get("/viewer/static/{name}", viewer_bundle)
    return app


def make_console(settings: ConsoleSettings, registry: SiteRegistry | None = None) -> Console:
    """A Console from settings (not started: call ``store.start()`` and follow the feeds)."""
    if not settings.secret_key:
        log.warning(
            "CONSOLE_SECRET_KEY is not set: forms and replay links made by this process "
            "are not valid on other replicas or after a restart"
        )
    totp_sealer = settings.totp_sealer()
    if totp_sealer is None:
        log.warning(
            "neither CONSOLE_TOTP_KEY_FILE nor CONSOLE_SECRET_KEY is set: TOTP seeds are "
            "stored in clear in console.state"
        )
    return Console(
        settings=settings,
        store=StateStore(settings.kafka, ConsoleState(totp_sealer=totp_sealer)),
        registry=registry or SiteRegistry(load_sites_file(settings.sites_file)),
        throttle=LoginThrottle.create(
            account_failures=settings.login_max_failures_per_account,
            address_failures=settings.login_max_failures_per_address,
            window_s=settings.login_failure_window_s,
        ),
        policy=PasswordPolicy(min_length=settings.password_min_length),
        csrf=CsrfSigner.create(settings.signing_key(), int(settings.session_absolute_s)),
        replay_tokens=URLSafeTimedSerializer(settings.signing_key(), salt="replaypipe-replay"),
    )


async def start_console(console: Console) -> list[asyncio.Task[None]]:
    """Start the producer and the two followers; returns their tasks once state is loaded."""
    await console.store.start()
    console.http = aiohttp.ClientSession()
    tasks = [
        asyncio.create_task(console.store.follow()),
        asyncio.create_task(follow_site_config(console.registry, console.settings.kafka)),
    ]
    await console.store.caught_up.wait()
    tasks.append(asyncio.create_task(sweep_forever(console)))
    return tasks


async def sweep_ended_sessions(console: Console) -> int:
    """Tombstone the records of sessions that timed out or were signed out; prune throttling.

    Every replica may do it; a second tombstone for the same key is harmless.
    """
    settings = console.settings
    ended = console.store.state.ended_sessions(
        console.now_ms(),
        idle_ms=int(settings.session_idle_s * 1000),
        absolute_ms=int(settings.session_absolute_s * 1000),
    )
    for key in ended:
        await console.store.delete(key)
    console.throttle.prune(console.clock())
    return len(ended)


async def sweep_forever(console: Console) -> None:
    """:func:`sweep_ended_sessions` every SWEEP_INTERVAL_S (a failure is logged, not fatal)."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            swept = await sweep_ended_sessions(console)
        except Exception:
            log.exception("session sweep failed")
        else:
            log.info("ended sessions swept", extra={"count": swept})


async def stop_console(console: Console, tasks: list[asyncio.Task[None]]) -> None:
    """Stop the followers, the producer and the HTTP client."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if console.http is not None:
        await console.http.close()
    await console.store.stop()


async def serve(settings: ConsoleSettings) -> None:
    """Run until SIGTERM/SIGINT."""
    console = make_console(settings)
    app = make_console_app(console)

    async def ready() -> str | None:
        return None if console.store.caught_up.is_set() else "console.state not loaded yet"

    add_ops_routes(app, ready)
    tasks = await start_console(console)
    runner = await start_site(app, settings.host, settings.port)
    log.info("console listening", extra={"port": settings.port})
    stop = stop_on_signals()
    await stop.wait()
    log.info("console shutting down")
    await runner.cleanup()
    await stop_console(console, tasks)


def main() -> None:
    """``replaypipe console``."""
    settings = ConsoleSettings.from_env()
    setup_logging("console", settings.log_level)
    asyncio.run(serve(settings))
