"""Read-side SQL: session list filters, the replay and summary queries (pure).

Parsing and SQL building only; the read API runs what these return. Analyst
SQL has its own module, :mod:`services.sink.analyst_sql`.
"""

from __future__ import annotations

import math
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


# What ClickHouse's DateTime64 holds: a time outside it is refused as a bad
# parameter by the engine (BAD_QUERY_PARAMETER), so it is refused here first.
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_time(param: str, value: str) -> datetime:
    """ISO 8601 (``2025-01-31T10:00:00Z``) or epoch milliseconds, as UTC, 1900 to 2299."""
    try:
        if value.isdigit():
            parsed = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise QueryParamError(
            param, f"'{param}' must be ISO 8601 (2025-01-31T10:00:00Z) or epoch milliseconds"
        ) from None
    if not EARLIEST_TIME <= parsed <= LATEST_TIME:
        raise QueryParamError(param, f"'{param}' must be a time from 1900-01-01 to 2299-12-31")
    return parsed


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
            min_duration = math.nan
        if not (math.isfinite(min_duration) and min_duration >= 0):
            raise QueryParamError(
                "min_duration", "'min_duration' must be seconds (a number, 0 or more)"
            )
    start_from = parse_time("from", query["from"]) if "from" in query else None
    start_to = parse_time("to", query["to"]) if "to" in query else None
    if start_from is not None and start_to is not None and start_to < start_from:
        raise QueryParamError("to", "'to' must not be before 'from'")
    return SessionFilter(
        start_from=start_from,
        start_to=start_to,
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
    """The list query over ``session_summaries`` and its parameters (fetches limit + 1).

    The filters and the sort apply to the sessions the page is chosen from; the
    page's rows come back in the same order (``session_id`` breaks ties).
    """
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
    # Two steps in one query: the page's session ids first, from only the
    # aggregates the filters and the sort need (the engine drops the view's
    # others), then every column for those ids alone (a primary-key range each).
    # Aggregating every column of every session of the site took ~10x longer.
    page = (
        f"SELECT session_id FROM session_summaries WHERE {' AND '.join(where)} "
        f"ORDER BY {order} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}"
    )
    sql = (
        f"SELECT {', '.join(SESSION_FIELDS)} FROM session_summaries "
        f"WHERE site_id = {{site:String}} AND session_id IN ({page}) ORDER BY {order}"
    )
    return sql, params


def session_summary_sql(site_id: str, session_id: str) -> tuple[str, dict[str, Any]]:
    """The query of one session's summary (same columns as the list) and its parameters."""
    sql = (
        f"SELECT {', '.join(SESSION_FIELDS)} FROM session_summaries "
        "WHERE site_id = {site:String} AND session_id = {session:String}"
    )
    return sql, {"site": site_id, "session": session_id}


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
