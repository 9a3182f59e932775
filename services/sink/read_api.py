"""The read API served by the sink process (the embedded engine is one per process).

Site endpoints take the site's read token (or the admin token); a token sees
only its own site. Analyst SQL and erasure take the admin token
(``SINK_ADMIN_TOKEN``; when it is empty they are disabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from aiohttp import web

from services.shared.errors import error_response
from services.shared.site_settings import SiteRegistry
from services.sink import metrics
from services.sink.analyst_sql import AnalystLimits, AnalystSqlRefused
from services.sink.queries import (
    REPLAY_SQL,
    QueryParamError,
    parse_session_filter,
    session_json,
    session_list_sql,
    session_summary_sql,
)
from services.sink.read_audit import ReadAudit, read_row, read_token_id
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, EngineError, LaneBusy

STORE_KEY = web.AppKey("store", ClickHouseStore)
READ_AUDIT_KEY = web.AppKey("read_audit", ReadAudit)
REGISTRY_KEY = web.AppKey("registry", SiteRegistry)
SETTINGS_KEY = web.AppKey("settings", SinkSettings)

MAX_SQL_CHARS = 100_000
ResponseT = TypeVar("ResponseT", bound=web.StreamResponse)
# Engine errors of a query that hit one of the analyst limits, and the setting.
SQL_LIMIT_ERRORS = {
    "MEMORY_LIMIT_EXCEEDED": "SINK_SQL_MAX_MEMORY_BYTES",
    "TIMEOUT_EXCEEDED": "SINK_SQL_MAX_SECONDS",
}
# Engine errors caused by what the client sent (a value ClickHouse cannot use):
# a 400; any other engine error is the store's fault: a 503.
CLIENT_FAULT_ERRORS = frozenset(
    {
        "BAD_QUERY_PARAMETER",
        "BAD_ARGUMENTS",
        "CANNOT_PARSE_DATETIME",
        "CANNOT_PARSE_DATE",
        "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_TEXT",
        "ARGUMENT_OUT_OF_BOUND",
        "DECIMAL_OVERFLOW",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    }
)
STREAM_CHUNK_BYTES = 256 * 1024


def error(status: int, code: str, detail: str) -> web.Response:
    """The JSON error body used by every service."""
    return error_response(status, code, detail)


def json_response(doc: Any, status: int = 200) -> web.Response:
    """A JSON response (orjson: datetimes as ISO 8601, anything else unknown as text)."""
    return web.Response(
        body=orjson.dumps(doc, default=str), status=status, content_type="application/json"
    )


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def _is_admin(request: web.Request, token: str) -> bool:
    admin = request.app[SETTINGS_KEY].admin_token
    return bool(admin) and hmac.compare_digest(token.encode(), admin.encode())


def authorize_site(request: web.Request, site_id: str) -> web.Response | None:
    """None if the request's token may read ``site_id``, else the error response."""
    token = _bearer(request)
    if not token:
        return error(401, "missing_token", "Send a read token as 'Authorization: Bearer <token>'.")
    if _is_admin(request, token):
        return None
    site = request.app[REGISTRY_KEY].get(site_id)
    if site is None or not site.accepts_read_token(token):
        return error(403, "forbidden", "This token may not read this site.")
    return None


def authorize_admin(request: web.Request) -> web.Response | None:
    """None if the request carries the admin token, else the error response."""
    token = _bearer(request)
    if not request.app[SETTINGS_KEY].admin_token:
        return error(
            403, "admin_disabled", "Set SINK_ADMIN_TOKEN on the sink to enable this endpoint."
        )
    if not token:
        return error(
            401, "missing_token", "Send the admin token as 'Authorization: Bearer <token>'."
        )
    if not _is_admin(request, token):
        return error(403, "forbidden", "This endpoint needs the admin token (SINK_ADMIN_TOKEN).")
    return None


def audit_read(
    request: web.Request, endpoint: str, action: str, *, session_id: str = "", outcome: str = "ok"
) -> web.Response | None:
    """Record a read made with a site read token (read_audit.py); None when recorded or
    not to be (the admin token: the console audits its own requests), else the 503 to
    answer instead of serving the read unaudited."""
    token = _bearer(request)
    if _is_admin(request, token):
        return None
    row = read_row(
        site_id=request.match_info["site"],
        actor=read_token_id(token),
        action=action,
        session_id=session_id,
        outcome=outcome,
        address=request.remote or "",
        endpoint=endpoint,
    )
    if request.app[READ_AUDIT_KEY].record(row):
        return None
    return error(
        503, "audit_unavailable", "The audit log cannot record reads right now; retry shortly."
    )


def _count(endpoint: str, response: ResponseT) -> ResponseT:
    metrics.READ_REQUESTS.labels(endpoint, str(response.status)).inc()
    return response


async def session_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/sites/{site}/sessions/{session}/events``: NDJSON, in replay order."""
    return await _stream_events(request, "events", "replay_opened", attachment=False)


async def export_session(request: web.Request) -> web.StreamResponse:
    """``GET /v1/sites/{site}/sessions/{session}/export``: the session's masked events as
    an NDJSON download (the replay's bytes), audited as ``export``."""
    return await _stream_events(request, "export", "export", attachment=True)


async def _stream_events(
    request: web.Request, endpoint: str, action: str, *, attachment: bool
) -> web.StreamResponse:
    site_id = request.match_info["site"]
    session_id = request.match_info["session"]
    denied = authorize_site(request, site_id)
    if denied is not None:
        return _count(endpoint, denied)
    try:
        body = await request.app[STORE_KEY].raw_query(
            REPLAY_SQL, parameters={"site": site_id, "session": session_id}
        )
    except EngineError as exc:
        return _count(endpoint, engine_error_response(exc))
    refused = audit_read(
        request, endpoint, action, session_id=session_id, outcome="ok" if body else "not_found"
    )
    if refused is not None:
        return _count(endpoint, refused)
    if not body:
        return _count(
            endpoint, error(404, "session_not_found", "No stored events for this session.")
        )
    # The stored JSON never holds a raw newline (orjson escapes them), so the
    # engine's TSVRaw output is already NDJSON: one rrweb event per line.
    headers = {"Content-Type": "application/x-ndjson"}
    if attachment:
        # The file name is fixed: the session id is the client's text, not echoed.
        headers["Content-Disposition"] = 'attachment; filename="session-events.ndjson"'
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), STREAM_CHUNK_BYTES):
        await response.write(view[start : start + STREAM_CHUNK_BYTES])
    await response.write_eof()
    return _count(endpoint, response)


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/sites/{site}/sessions``: filtered, sorted, paginated session summaries."""
    site_id = request.match_info["site"]
    denied = authorize_site(request, site_id)
    if denied is not None:
        return _count("sessions", denied)
    try:
        session_filter = parse_session_filter(request.query)
    except QueryParamError as exc:
        return _count("sessions", error(400, f"invalid_{exc.param}", exc.detail))
    sql, params = session_list_sql(site_id, session_filter)
    try:
        rows = (await request.app[STORE_KEY].query(sql, parameters=params)).result_rows
    except EngineError as exc:
        return _count("sessions", engine_error_response(exc))
    refused = audit_read(request, "sessions", "sessions_listed")
    if refused is not None:
        return _count("sessions", refused)
    more = len(rows) > session_filter.limit
    doc = {
        "sessions": [session_json(row) for row in rows[: session_filter.limit]],
        "next_offset": session_filter.offset + session_filter.limit if more else None,
    }
    return _count("sessions", json_response(doc))


async def get_session(request: web.Request) -> web.Response:
    """``GET /v1/sites/{site}/sessions/{session}``: one session's summary."""
    site_id = request.match_info["site"]
    denied = authorize_site(request, site_id)
    if denied is not None:
        return _count("session", denied)
    sql, params = session_summary_sql(site_id, request.match_info["session"])
    try:
        rows = (await request.app[STORE_KEY].query(sql, parameters=params)).result_rows
    except EngineError as exc:
        return _count("session", engine_error_response(exc))
    session_id = request.match_info["session"]
    outcome = "ok" if rows else "not_found"
    refused = audit_read(
        request, "session", "session_viewed", session_id=session_id, outcome=outcome
    )
    if refused is not None:
        return _count("session", refused)
    if not rows:
        return _count("session", error(404, "session_not_found", "No stored session with this id."))
    return _count("session", json_response(session_json(rows[0])))


async def analyst_sql(request: web.Request) -> web.Response:
    """``POST /v1/sql`` (admin): one read-only SELECT over the project's tables.

    Body: the SQL text, or ``{"sql": "..."}``. Checked on ClickHouse's own parse
    (:mod:`services.sink.analyst_sql`), run on its own connection with limits in
    time, memory, rows and bytes. Answer: ``{"columns", "types", "rows",
    "truncated", "elapsed_ms"}``.
    """
    denied = authorize_admin(request)
    if denied is not None:
        return _count("sql", denied)
    raw = await request.text()
    sql = raw
    if request.content_type == "application/json":
        try:
            doc = orjson.loads(raw)
            sql = doc["sql"] if isinstance(doc, dict) and isinstance(doc.get("sql"), str) else ""
        except orjson.JSONDecodeError:
            sql = ""
    if not sql.strip() or len(sql) > MAX_SQL_CHARS:
        return _count(
            "sql",
            error(
                400,
                "invalid_sql",
                f"Send one SELECT query (at most {MAX_SQL_CHARS} characters) "
                'as the body or as {"sql": ...}.',
            ),
        )
    return _count("sql", await run_analyst_sql(request, sql, analyst_limits(request)))


async def run_analyst_sql(request: web.Request, sql: str, limits: AnalystLimits) -> web.Response:
    """Check and run one analyst query; its rows, or the refusal as a client error.

    Shared by ``POST /v1/sql`` and the console's site-scoped ``POST /v1/scoped-sql``
    (which adds row filters to ``limits``): one allowlist, one set of limits.
    """
    started = time.perf_counter()
    try:
        result = await request.app[STORE_KEY].analyst_sql(sql, limits)
    except AnalystSqlRefused as exc:
        return error(400, exc.code, exc.detail)
    except LaneBusy:
        response = error(
            429, "sql_busy", "Another analyst query is running; retry when it has finished."
        )
        response.headers["Retry-After"] = "1"
        return response
    except EngineError as exc:
        limit = SQL_LIMIT_ERRORS.get(exc.name or "")
        hint = f" The limit is {limit} on the sink." if limit else ""
        return error(
            400,
            "query_failed",
            f"ClickHouse refused the query: {exc.name or 'error'} (code {exc.code}).{hint}",
        )
    doc = {
        "columns": result.columns,
        "types": result.types,
        "rows": result.rows,
        "truncated": result.truncated,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return json_response(doc)


def analyst_limits(request: web.Request) -> AnalystLimits:
    """The per-query limits of analyst SQL from the sink's settings."""
    settings = request.app[SETTINGS_KEY]
    return AnalystLimits(
        max_rows=settings.sql_max_rows,
        max_result_bytes=settings.sql_max_result_bytes,
        max_seconds=settings.sql_max_seconds,
        max_memory_bytes=settings.sql_max_memory_bytes,
    )


async def erase_session(request: web.Request) -> web.Response:
    """``DELETE /v1/sites/{site}/sessions/{session}`` (admin): GDPR erasure of one session."""
    return await _erase(request, session_id=request.match_info["session"])


async def erase_visitor(request: web.Request) -> web.Response:
    """``DELETE /v1/sites/{site}/visitors/{visitor}`` (admin): erase every session of a visitor."""
    return await _erase(request, visitor_id=request.match_info["visitor"])


async def _erase(request: web.Request, **who: str) -> web.Response:
    denied = authorize_admin(request)
    if denied is not None:
        return _count("erase", denied)
    erasure = await request.app[STORE_KEY].erase(request.match_info["site"], **who)
    return _count(
        "erase",
        json_response({"site_id": erasure.site_id, "erased_sessions": list(erasure.session_ids)}),
    )


def engine_error_response(exc: EngineError) -> web.Response:
    """A refused read as an error body with the engine's error name only (never its
    message: it can quote parameters and data)."""
    if exc.name in CLIENT_FAULT_ERRORS:
        return error(
            400,
            "invalid_parameter",
            f"ClickHouse cannot use a value of this request ({exc.name}); check its parameters.",
        )
    return error(503, "store_unavailable", "ClickHouse did not answer this read; retry later.")


def add_read_routes(app: web.Application) -> None:
    """Mount the read API."""
    app.router.add_get("/v1/sites/{site}/sessions", list_sessions)
    app.router.add_get("/v1/sites/{site}/sessions/{session}", get_session)
    app.router.add_get("/v1/sites/{site}/sessions/{session}/events", session_events)
    app.router.add_get("/v1/sites/{site}/sessions/{session}/export", export_session)
    app.router.add_delete("/v1/sites/{site}/sessions/{session}", erase_session)
    app.router.add_delete("/v1/sites/{site}/visitors/{visitor}", erase_visitor)
    app.router.add_post("/v1/sql", analyst_sql)


def make_read_app(
    store: ClickHouseStore, registry: SiteRegistry, settings: SinkSettings
) -> web.Application:
    """An aiohttp application with the read API (the sink adds ops routes to it)."""
    app = web.Application(client_max_size=MAX_SQL_CHARS * 4)
    app[STORE_KEY] = store
    app[REGISTRY_KEY] = registry
    app[SETTINGS_KEY] = settings
    app[READ_AUDIT_KEY] = ReadAudit(store)
    app.cleanup_ctx.append(_flush_read_audit)
    add_read_routes(app)
    return app


async def _flush_read_audit(app: web.Application) -> AsyncIterator[None]:
    """While the app serves, insert the recorded reads every second; on shutdown, the rest."""
    audit = app[READ_AUDIT_KEY]
    task = asyncio.create_task(audit.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await audit.flush()
