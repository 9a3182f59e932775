"""The audit log in ClickHouse: console.audit → ``audit_log``, and its read endpoint.

Pure part: :func:`audit_row` turns one event from the console into a row (or
None for a record this version cannot use). IO part: :class:`AuditWriter`
consumes ``console.audit`` with its own consumer group, inserts a batch, and
commits offsets only after the insert is acknowledged (a redelivered event is
collapsed by ``event_id``). ``GET /v1/sites/{site}/audit`` (admin token: the
console's service credential) reads a site's log back, newest first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.shared.kafka import KafkaSettings
from services.shared.kafka_security import aiokafka_client_kwargs
from services.sink.read_api import STORE_KEY, authorize_admin, error, json_response
from services.sink.read_audit import AUDIT_TABLE as AUDIT_TABLE
from services.sink.read_audit import COLUMNS as COLUMNS
from services.sink.store import ClickHouseStore

log = logging.getLogger("replaypipe.sink.audit")

AUDIT_TOPIC = "console.audit"  # services/console/state_feed.py creates it
# Actions whose target is a session id (the rest name a token, a member, ...).
SESSION_ACTIONS = frozenset({"replay_opened", "session_viewed", "export", "session_erased"})
_CAPS = {"actor": 320, "action": 64, "target": 200, "outcome": 32, "address": 64, "detail": 2000}
MAX_READ_ROWS = 1000


def audit_row(value: bytes | None) -> list[Any] | None:
    """One ``console.audit`` value as a row of ``audit_log`` (COLUMNS order), or None."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
        event_id = uuid.UUID(str(doc["event_id"]))
        at = datetime.fromtimestamp(int(doc["at_ms"]) / 1000, tz=UTC)
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None
    if not isinstance(doc, dict):
        return None
    text = {name: str(doc.get(name, ""))[:cap] for name, cap in _CAPS.items()}
    site_id = str(doc.get("site_id", ""))[:128]
    session_id = text["target"] if text["action"] in SESSION_ACTIONS else ""
    return [
        event_id,
        at,
        site_id,
        session_id,
        text["actor"],
        text["action"],
        text["target"],
        text["outcome"],
        text["address"],
        text["detail"],
    ]


class AuditWriter:
    """Follows ``console.audit`` into ``audit_log`` (at least once, deduplicated by id)."""

    def __init__(self, store: ClickHouseStore, kafka: KafkaSettings, group_id: str) -> None:
        self.store = store
        self.consumer = AIOKafkaConsumer(
            AUDIT_TOPIC,
            **aiokafka_client_kwargs(kafka),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The console creates the topic, possibly after the sink started: look again soon.
            metadata_max_age_ms=5000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Insert every batch of events, then commit, until ``stop`` is set."""
        await self.consumer.start()
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=500, max_records=5000)
                rows = [
                    row
                    for records in batches.values()
                    for record in records
                    if (row := audit_row(record.value)) is not None
                ]
                if rows:
                    columns = [list(col) for col in zip(*rows, strict=True)]
                    token = "audit:" + ",".join(
                        f"{tp.partition}:{recs[-1].offset}" for tp, recs in batches.items()
                    )
                    await self.store.insert_columns(AUDIT_TABLE, columns, COLUMNS, token)
                if batches:
                    await self.consumer.commit()
        finally:
            await self.consumer.stop()


AUDIT_SQL = (
    "SELECT toString(event_id), formatDateTime(at, '%Y-%m-%d %H:%i:%S', 'UTC'), actor, action, "
    "target, outcome, address, detail FROM audit_log FINAL "
    "WHERE site_id = {site:String} "
    "AND ({action:String} = '' OR action = {action:String}) "
    "AND ({actor:String} = '' OR actor = {actor:String}) "
    "ORDER BY at DESC LIMIT {limit:UInt32}"
)


async def read_audit_log(
    store: ClickHouseStore, site_id: str, *, action: str = "", actor: str = "", limit: int = 200
) -> list[dict[str, str]]:
    """A site's audit events, newest first."""
    result = await store.query(
        AUDIT_SQL,
        parameters={
            "site": site_id,
            "action": action,
            "actor": actor,
            "limit": max(1, min(limit, MAX_READ_ROWS)),
        },
    )
    names = ("event_id", "at", "actor", "action", "target", "outcome", "address", "detail")
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


async def audit_log_endpoint(request: web.Request) -> web.Response:
    """``GET /v1/sites/{site}/audit`` (admin token): ``{"events": [...]}``, newest first.

    ``GET /v1/audit`` answers the same for the events of no site (logins, logouts,
    password and two-factor changes).
    """

    denied = authorize_admin(request)
    if denied is not None:
        return denied
    try:
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        return error(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_READ_ROWS}.")
    events = await read_audit_log(
        request.app[STORE_KEY],
        request.match_info.get("site", ""),
        action=request.query.get("action", ""),
        actor=request.query.get("actor", ""),
        limit=limit,
    )
    return json_response({"events": events})


def add_audit_routes(app: web.Application) -> None:
    """Mount ``GET /v1/sites/{site}/audit`` and ``GET /v1/audit``."""
    app.router.add_get("/v1/sites/{site}/audit", audit_log_endpoint)
    app.router.add_get("/v1/audit", audit_log_endpoint)
