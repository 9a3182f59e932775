"""ClickHouse access: opening the client (embedded chdb or a server), migrations,
the async store the writer and the read API share, and erasure."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect

from services.sink.schema import migration_table_ddl, planned_statements
from services.sink.schema import migrations as migrations  # re-export for callers
from services.sink.schema import split_statements as split_statements

log = logging.getLogger("replaypipe.sink.store")

MIGRATIONS_TABLE = "schema_migrations"
EVENTS_TABLE = "events"
BATCHES_TABLE = "session_batches"
INCOMING_TABLE = "incoming_batches"
SESSIONS_TABLE = "sessions"


def resolve_clickhouse_url(url: str) -> str:
    """Make a relative embedded path absolute: ``chdb://var/ch`` → ``chdb:///cwd/var/ch``."""
    if url.startswith("chdb://") and not url.startswith("chdb:///"):
        path = Path(url.removeprefix("chdb://")).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return f"chdb://{path}"
    if url.startswith("chdb:///"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return url


def open_client(url: str) -> Any:
    """A clickhouse-connect client for ``chdb:///path`` (embedded) or ``http(s)://…``."""
    return clickhouse_connect.get_client(dsn=resolve_clickhouse_url(url))


def run_migrations(client: Any, cluster: str | None = None) -> list[int]:
    """Apply the migrations not yet recorded; idempotent. Returns versions applied.

    With ``cluster`` the cluster variant (Replicated* + Distributed, see
    :mod:`services.sink.schema`) is applied ``ON CLUSTER``.
    """
    client.command(migration_table_ddl(cluster))
    done = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for version, name, statements in planned_statements(cluster):
        if version in done:
            continue
        for statement in statements:
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[version, name]], column_names=["version", "name"])
        log.info("migration applied", extra={"version": version, "migration": name})
        applied.append(version)
    return applied


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed."""

    site_id: str
    session_ids: tuple[str, ...]


class ClickHouseStore:
    """Async wrapper over the sync clickhouse-connect client (calls run in a thread).

    One lock serialises calls: the embedded engine is one per process and the
    client is not documented as thread-safe. Queries run in a thread release
    the GIL, so the event loop (Kafka heartbeats, HTTP) keeps running.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = asyncio.Lock()
        self._cluster: str | bool | None = False  # False: not looked up yet

    async def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str,
    ) -> None:
        """Columnar insert; a retry with the same token is dropped by ClickHouse."""
        async with self._lock:
            await asyncio.to_thread(
                self.client.insert,
                table,
                columns,
                column_names=list(column_names),
                column_oriented=True,
                settings={"insert_deduplication_token": dedup_token},
            )

    async def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        """Run a query; returns the clickhouse-connect QueryResult."""
        async with self._lock:
            return await asyncio.to_thread(
                self.client.query, sql, parameters=parameters, settings=settings
            )

    async def raw_query(
        self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "TSVRaw"
    ) -> bytes:
        """Run a query and return the engine's bytes in ``fmt`` (no per-call settings)."""
        async with self._lock:
            result = await asyncio.to_thread(
                self.client.raw_query, sql, parameters=parameters, fmt=fmt
            )
            return bytes(result)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run a statement without a result set."""
        async with self._lock:
            return await asyncio.to_thread(self.client.command, sql, parameters=parameters)

    async def cluster(self) -> str | None:
        """The cluster name if ``events`` is a Distributed table (cluster schema), else None."""
        if self._cluster is False:
            result = await self.query(
                "SELECT engine_full FROM system.tables "
                "WHERE database = currentDatabase() AND name = {t:String}",
                parameters={"t": EVENTS_TABLE},
            )
            full = result.result_rows[0][0] if result.result_rows else ""
            match = re.match(r"Distributed\('?([\w-]+)'?", full)
            self._cluster = match.group(1) if match else None
        return self._cluster if isinstance(self._cluster, str) else None

    async def erase(
        self, site_id: str, *, session_id: str | None = None, visitor_id: str | None = None
    ) -> Erasure:
        """Delete one session, or every session of a visitor, from events and sessions.

        Lightweight DELETE hides the rows from every query as soon as it returns
        (they are purged at the next merge). On a cluster it runs on the local
        tables ``ON CLUSTER``.
        """
        if (session_id is None) == (visitor_id is None):
            raise ValueError("erase needs exactly one of session_id or visitor_id")
        if session_id is not None:
            sessions = [session_id]
        else:
            result = await self.query(
                f"SELECT DISTINCT session_id FROM {EVENTS_TABLE} "
                "WHERE site_id = {site:String} AND visitor_id = {visitor:String} "
                f"UNION DISTINCT SELECT session_id FROM {SESSIONS_TABLE} "
                "WHERE site_id = {site:String} AND visitor_id = {visitor:String}",
                parameters={"site": site_id, "visitor": visitor_id},
            )
            sessions = sorted(row[0] for row in result.result_rows)
        if not sessions:
            return Erasure(site_id, ())
        cluster = await self.cluster()
        suffix = f"_local ON CLUSTER '{cluster}'" if cluster else ""
        for table in (EVENTS_TABLE, SESSIONS_TABLE):
            await self.command(
                f"DELETE FROM {table}{suffix} "
                "WHERE site_id = {site:String} AND session_id IN {sessions:Array(String)}",
                parameters={"site": site_id, "sessions": sessions},
            )
        log.info("erasure done", extra={"count": len(sessions)})
        return Erasure(site_id, tuple(sessions))
