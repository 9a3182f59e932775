"""The read API served by the sink process (the embedded engine is one per process)."""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from services.shared.site_settings import SiteRegistry
from services.sink import metrics
from services.sink.settings import SinkSettings
from services.sink.writer import ClickHouseStore

STORE_KEY = web.AppKey("store", ClickHouseStore)
REGISTRY_KEY = web.AppKey("registry", SiteRegistry)
SETTINGS_KEY = web.AppKey("settings", SinkSettings)


def error(status: int, code: str, detail: str) -> web.Response:
    """The JSON error body used by every service."""
    return web.json_response({"error": code, "detail": detail}, status=status)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def authorize_site(request: web.Request, site_id: str) -> web.Response | None:
    """None if the request's token may read ``site_id``, else the error response."""
    token = _bearer(request)
    if not token:
        return error(401, "missing_token", "Send a read token as 'Authorization: Bearer <token>'.")
    admin = request.app[SETTINGS_KEY].admin_token
    if admin and hmac.compare_digest(token, admin):
        return None
    site = request.app[REGISTRY_KEY].get(site_id)
    if site is None or not site.accepts_read_token(token):
        return error(403, "forbidden", "This token may not read this site.")
    return None


async def session_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/sites/{site}/sessions/{session}/events``: NDJSON, in replay order."""
    site_id = request.match_info["site"]
    session_id = request.match_info["session"]
    denied = authorize_site(request, site_id)
    if denied is not None:
        metrics.READ_REQUESTS.labels("events", str(denied.status)).inc()
        return denied
    result = await request.app[STORE_KEY].query(
        "SELECT data FROM events FINAL WHERE site_id = {site:String} "
        "AND session_id = {session:String} ORDER BY ts, window_id, seq, idx",
        parameters={"site": site_id, "session": session_id},
    )
    if not result.result_rows:
        metrics.READ_REQUESTS.labels("events", "404").inc()
        return error(404, "session_not_found", "No stored events for this session.")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    chunk: list[bytes] = []
    for (data,) in result.result_rows:
        chunk.append(data.encode() if isinstance(data, str) else data)
        if len(chunk) >= 500:
            await response.write(b"\n".join(chunk) + b"\n")
            chunk = []
    if chunk:
        await response.write(b"\n".join(chunk) + b"\n")
    await response.write_eof()
    metrics.READ_REQUESTS.labels("events", "200").inc()
    return response


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/sites/{site}/sessions``: most recent sessions first."""
    site_id = request.match_info["site"]
    denied = authorize_site(request, site_id)
    if denied is not None:
        metrics.READ_REQUESTS.labels("sessions", str(denied.status)).inc()
        return denied
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 1000)
    except ValueError:
        return error(400, "invalid_limit", "'limit' must be an integer between 1 and 1000.")
    result = await request.app[STORE_KEY].query(
        "SELECT session_id, any(visitor_id), min(ts), max(ts), count() FROM events FINAL "
        "WHERE site_id = {site:String} GROUP BY session_id ORDER BY max(ts) DESC "
        "LIMIT {limit:UInt32}",
        parameters={"site": site_id, "limit": limit},
    )
    sessions = [
        {
            "session_id": s,
            "visitor_id": v,
            "start": a.isoformat(),
            "end": b.isoformat(),
            "events": n,
        }
        for s, v, a, b, n in result.result_rows
    ]
    metrics.READ_REQUESTS.labels("sessions", "200").inc()
    return web.Response(body=orjson.dumps({"sessions": sessions}), content_type="application/json")


def add_read_routes(app: web.Application) -> None:
    """Mount the read API."""
    app.router.add_get("/v1/sites/{site}/sessions", list_sessions)
    app.router.add_get("/v1/sites/{site}/sessions/{session}/events", session_events)
