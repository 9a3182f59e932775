"""Read-side SQL: session list filters, the replay query, analyst SQL limits (pure).

Parsing and SQL building only; the read API runs what these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_PAGE = 1000
DEFAULT_PAGE = 50
SORTS = {
    "start": "start_time",
    "end": "end_time",
    "duration": "duration_s",
    "active": "active_s",
    "events": "event_count",
}

# The session list's columns, as the JSON fields of one session.
SESSION_FIELDS = (
    "session_id",
    "visitor_id",
    "start_time",
    "end_time",
    "duration_s",
    "active_s",
    "event_count",
    "bytes",
    "page_views",
    "page_urls",
    "first_url",
    "clicks",
    "rage_clicks",
    "inputs",
    "console_errors",
    "viewport",
    "user_agent",
    "consent",
)

REPLAY_SQL = (
    "SELECT data FROM events FINAL "
    "WHERE site_id = {site:String} AND session_id = {session:String} "
    "ORDER BY ts, window_id, seq, idx"
)

# Analyst SQL runs with these settings; readonly last (it forbids changing later ones).
ANALYST_MAX_ROWS = 10_000
ANALYST_SETTINGS: dict[str, Any] = {
    "max_execution_time": 30,
    "max_memory_usage": 4_000_000_000,
    "max_result_rows": ANALYST_MAX_ROWS + 1,
    "result_overflow_mode": "break",
    "readonly": 1,
}


class QueryParamError(ValueError):
    """A query parameter that cannot be used; ``param`` names it."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(detail)
        self.param = param
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Filters, sort and page of a session list request."""

    start_from: datetime | None = None
    start_to: datetime | None = None
    min_duration_s: float | None = None
    url_contains: str | None = None
    visitor_id: str | None = None
    has_rage_clicks: bool = False
    has_errors: bool = False
    sort: str = "start"
    descending: bool = True
    limit: int = DEFAULT_PAGE
    offset: int = 0


def parse_time(param: str, value: str) -> datetime:
    """ISO 8601 (``2025-01-31T10:00:00Z``) or epoch milliseconds, as UTC."""
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise QueryParamError(
            param, f"'{param}' must be ISO 8601 (2025-01-31T10:00:00Z) or epoch milliseconds"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bool(param: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no", ""):
        return False
    raise QueryParamError(param, f"'{param}' must be true or false")


def _int(param: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise QueryParamError(param, f"'{param}' must be an integer from {low} to {high}")
    return number


def parse_session_filter(query: Mapping[str, str]) -> SessionFilter:
    """Read ``from, to, min_duration, url, visitor, rage, errors, sort, limit, offset``."""
    sort = query.get("sort", "-start")
    descending = sort.startswith("-")
    if sort.lstrip("-") not in SORTS:
        raise QueryParamError(
            "sort", f"'sort' must be one of {sorted(SORTS)}, '-' first for descending"
        )
    min_duration = None
    if "min_duration" in query:
        try:
            min_duration = float(query["min_duration"])
        except ValueError:
            raise QueryParamError(
                "min_duration", "'min_duration' must be seconds (a number)"
            ) from None
    return SessionFilter(
        start_from=parse_time("from", query["from"]) if "from" in query else None,
        start_to=parse_time("to", query["to"]) if "to" in query else None,
        min_duration_s=min_duration,
        url_contains=query.get("url") or None,
        visitor_id=query.get("visitor") or None,
        has_rage_clicks=_bool("rage", query.get("rage", "")),
        has_errors=_bool("errors", query.get("errors", "")),
        sort=sort.lstrip("-"),
        descending=descending,
        limit=_int("limit", query.get("limit", str(DEFAULT_PAGE)), 1, MAX_PAGE),
        offset=_int("offset", query.get("offset", "0"), 0, 10_000_000),
    )


def session_list_sql(site_id: str, f: SessionFilter) -> tuple[str, dict[str, Any]]:
    """The list query over ``session_summaries`` and its parameters (fetches limit + 1)."""
    where = ["site_id = {site:String}"]
    params: dict[str, Any] = {"site": site_id, "limit": f.limit + 1, "offset": f.offset}
    if f.visitor_id is not None:
        where.append("visitor_id = {visitor:String}")
        params["visitor"] = f.visitor_id
    if f.start_from is not None:
        where.append("start_time >= {start_from:DateTime64(3, 'UTC')}")
        params["start_from"] = f.start_from
    if f.start_to is not None:
        where.append("start_time < {start_to:DateTime64(3, 'UTC')}")
        params["start_to"] = f.start_to
    if f.min_duration_s is not None:
        where.append("duration_s >= {min_duration:Float64}")
        params["min_duration"] = f.min_duration_s
    if f.url_contains is not None:
        where.append("arrayExists(u -> position(u, {url:String}) > 0, page_urls)")
        params["url"] = f.url_contains
    if f.has_rage_clicks:
        where.append("rage_clicks > 0")
    if f.has_errors:
        where.append("console_errors > 0")
    order = f"{SORTS[f.sort]} {'DESC' if f.descending else 'ASC'}, session_id"
    sql = (
        f"SELECT {', '.join(SESSION_FIELDS)} FROM session_summaries "
        f"WHERE {' AND '.join(where)} ORDER BY {order} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    return sql, params


def session_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """One list row as the API's JSON object (times ISO 8601 UTC, viewport as w/h)."""
    doc = dict(zip(SESSION_FIELDS, row, strict=True))
    for name in ("start_time", "end_time"):
        value = doc[name]
        if isinstance(value, datetime):
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
            doc[name] = value.isoformat().replace("+00:00", "Z")
    width, height = doc["viewport"]
    doc["viewport"] = {"width": width, "height": height}
    doc["consent"] = {1: "granted", 0: "refused"}.get(doc["consent"], "unknown")
    return doc


def analyst_sql_is_select(normalized: str) -> bool:
    """True for one SELECT/WITH query (``normalized`` = ClickHouse's formatQuerySingleLine)."""
    head = normalized.lstrip().upper()
    return head.startswith(("SELECT ", "WITH ", "(SELECT ")) and " SETTINGS " not in head


def analyst_wrapped_sql(normalized: str) -> str:
    """The analyst query as a subquery, so readonly and limits apply to all of it."""
    return f"SELECT * FROM (\n{normalized}\n)"
