"""ClickHouse access: opening clients (embedded chdb or a server), migrations,
the async store with one lane each for the writer, the read API and analyst SQL,
and erasure."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.exceptions import Error as ClickHouseClientError

from services.sink.analyst_sql import (
    AnalystLimits,
    AnalystResult,
    capped_rows,
    check_explain_ast,
    wrapped_sql,
)
from services.sink.connection import ClickHouseConnection, client_kwargs
from services.sink.schema import migration_table_ddl, planned_statements

log = logging.getLogger("replaypipe.sink.store")

MIGRATIONS_TABLE = "schema_migrations"
EVENTS_TABLE = "events"
INCOMING_TABLE = "incoming_batches"
SESSIONS_TABLE = "sessions"

T = TypeVar("T")
# Query priorities of the lanes (lower runs first; analyst SQL: ANALYST_PRIORITY).
READ_PRIORITY = 1
WRITE_PRIORITY = 2


def open_client(
    connection: ClickHouseConnection | str, settings: dict[str, Any] | None = None
) -> Any:
    """A clickhouse-connect client for ``chdb:///path`` (embedded) or ``http(s)://…`` (a
    server, as the connection's user, over verified TLS with https); ``settings`` apply
    to every query of the client."""
    if isinstance(connection, str):
        connection = ClickHouseConnection(connection)
    return clickhouse_connect.get_client(**client_kwargs(connection), settings=settings)


def run_migrations(
    client: Any, cluster: str | None = None, *, upto: int | None = None
) -> list[int]:
    """Apply the migrations not yet recorded; idempotent. Returns versions applied.

    With ``cluster`` the cluster variant (Replicated* + Distributed, see
    :mod:`services.sink.schema`) is applied ``ON CLUSTER``. With ``upto`` only the
    versions up to it (tests and benchmarks start from an older schema).
    """
    client.command(migration_table_ddl(cluster))
    done = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for version, name, statements in planned_statements(cluster):
        if version in done or (upto is not None and version > upto):
            continue
        for statement in statements:
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[version, name]], column_names=["version", "name"])
        log.info("migration applied", extra={"version": version, "migration": name})
        applied.append(version)
    return applied


def _run_analyst_sql(client: Any, sql: str, limits: AnalystLimits) -> AnalystResult:
    """Normalise, check and run one analyst query on ``client`` (a thread's blocking call).

    Every step uses the engine: its parser normalises (one statement, no comments),
    its ``EXPLAIN AST`` of exactly the text that then runs is what the policy
    checks, and the result is read block by block, cut at the row and byte caps
    (closing the stream ends the query).
    """
    # Parsing only, nothing of the query runs: no limits needed (and SET-ting
    # readonly on an embedded connection would stick to it).
    normalized = client.query(
        "SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}
    ).result_rows[0][0]
    checked = wrapped_sql(normalized)
    explain = client.raw_query(f"EXPLAIN AST {checked}", fmt="TSVRaw")
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    check_explain_ast(bytes(explain).decode(), tables)
    with client.query_row_block_stream(checked, settings=limits.settings()) as stream:
        rows, truncated = capped_rows(stream, limits)
        source = stream.source
        return AnalystResult(
            columns=list(source.column_names),
            types=[t.name for t in source.column_types],
            rows=rows,
            truncated=truncated,
        )


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed."""

    site_id: str
    session_ids: tuple[str, ...]


class EngineError(Exception):
    """A statement ClickHouse refused, by its error code and name only.

    The engine's message is not kept: it can quote the query and the data
    (``Cannot parse string '…'``), which must not reach logs or error bodies.
    """

    def __init__(self, code: int | None, name: str | None) -> None:
        super().__init__(f"ClickHouse error {code} {name}")
        self.code = code
        self.name = name


class LaneBusy(Exception):
    """Every connection of a bounded lane (analyst SQL) is in use."""


class _Lane:
    """Connections for one kind of work, each used by one call at a time, on threads
    of the lane's own (so a slow analyst query cannot take the threads reads need)."""

    def __init__(self, name: str, clients: Sequence[Any], *, engine_errors: bool = True) -> None:
        self.clients = list(clients)
        # Reads answer clients: their errors become EngineError (no message). The
        # writer's errors stay as raised: it reads its own marker in the message.
        self._engine_errors = engine_errors
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for client in self.clients:
            self._idle.put_nowait(client)
        self._threads = ThreadPoolExecutor(len(self.clients), thread_name_prefix=f"ch-{name}")

    @property
    def busy(self) -> bool:
        """True when no connection is free."""
        return self._idle.empty()

    async def run(self, call: Callable[[Any], T]) -> T:
        """Run ``call(client)`` on a free connection in a thread (queries release the GIL)."""
        client = await self._idle.get()
        loop = asyncio.get_running_loop()
        future = self._threads.submit(call, client)
        # The connection is free again when the call ends, even if the awaiting
        # task was cancelled meanwhile: the engine call itself cannot be.
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._idle.put_nowait, client))
        try:
            return await asyncio.wrap_future(future)
        except ClickHouseClientError as exc:
            if not self._engine_errors:
                raise
            # Not chained: a logged traceback would carry the engine's message.
            raise EngineError(exc.code, exc.name) from None

    def close(self) -> None:
        """Stop the lane's threads (after the calls running in them)."""
        self._threads.shutdown(wait=True)


class ClickHouseStore:
    """Async access to ClickHouse in three lanes, so none waits behind another:

    - writes (the writer's inserts, DDL, erasure deletes): ``client``, one call at a time;
    - reads (the read API): a pool of connections;
    - analyst SQL: its own bounded connections (``LaneBusy`` when all are in use).

    Each connection is a clickhouse-connect client; on the embedded engine every
    client is its own chdb connection to the one engine of the process, and
    queries on different connections run concurrently. Built from one client
    (tests, CLI) every lane shares it: calls then queue on that client.
    """

    def __init__(
        self,
        client: Any,
        *,
        read_clients: Sequence[Any] = (),
        analyst_clients: Sequence[Any] = (),
    ) -> None:
        self.client = client
        # Serialises the writer's calls; held by tests to keep an insert in flight.
        self._lock = asyncio.Lock()
        self._write = _Lane("write", [client], engine_errors=False)
        self._read = _Lane("read", read_clients or [client])
        self._analyst = _Lane("sql", analyst_clients or [client])
        self._cluster: str | bool | None = False  # False: not looked up yet
        # (table, column names) -> clickhouse-connect column types, read once (insert_columns)
        self._column_types: dict[tuple[str, tuple[str, ...]], Sequence[Any]] = {}

    @classmethod
    def open(
        cls,
        connection: ClickHouseConnection | str,
        *,
        read_connections: int = 2,
        analyst: ClickHouseConnection | None = None,
        analyst_connections: int = 1,
    ) -> ClickHouseStore:
        """Open the lanes' clients: one for writes, ``read_connections`` for reads and
        ``analyst_connections`` for analyst SQL (on ``analyst`` when given, e.g. a
        read-only user on a server)."""
        url = ClickHouseConnection(connection) if isinstance(connection, str) else connection
        # ClickHouse pauses a running query while one of a lower priority value
        # runs: an insert pauses for a read (short), an analyst query for both.
        return cls(
            open_client(url, {"priority": WRITE_PRIORITY}),
            read_clients=[
                open_client(url, {"priority": READ_PRIORITY})
                for _ in range(max(1, read_connections))
            ],
            analyst_clients=[
                open_client(analyst or url) for _ in range(max(1, analyst_connections))
            ],
        )

    def close(self) -> None:
        """Close every lane's threads and clients."""
        lanes = (self._write, self._read, self._analyst)
        clients = {id(c): c for lane in lanes for c in lane.clients}
        for lane in lanes:
            lane.close()
        for client in clients.values():
            client.close()

    async def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str,
    ) -> None:
        """Columnar insert; a retry with the same token is dropped by ClickHouse.

        The columns' types are read from the table once per store and columns
        (clickhouse-connect would otherwise run a ``DESCRIBE TABLE`` before every
        insert, one more engine query each time); a failed insert forgets them, so
        its retry reads them again (a migration may have changed the table).
        """
        key = (table, tuple(column_names))
        async with self._lock:
            types = self._column_types.get(key)
            if types is None:
                read: Sequence[Any] = await self._write.run(
                    lambda client: (
                        client.create_insert_context(
                            table, list(column_names), column_oriented=True
                        ).column_types
                    )
                )
                self._column_types[key] = types = read
            try:
                await self._write.run(
                    lambda client: client.insert(
                        table,
                        columns,
                        column_names=list(column_names),
                        column_types=types,
                        column_oriented=True,
                        settings={"insert_deduplication_token": dedup_token},
                    )
                )
            except BaseException:
                self._column_types.pop(key, None)
                raise

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run a statement without a result set (write lane)."""
        async with self._lock:
            return await self._write.run(lambda client: client.command(sql, parameters=parameters))

    async def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        """Run a query on the read lane; returns the clickhouse-connect QueryResult."""
        return await self._read.run(
            lambda client: client.query(sql, parameters=parameters, settings=settings)
        )

    async def raw_query(
        self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "TSVRaw"
    ) -> bytes:
        """Run a query on the read lane; the engine's bytes in ``fmt`` (no per-call settings)."""
        return bytes(
            await self._read.run(
                lambda client: client.raw_query(sql, parameters=parameters, fmt=fmt)
            )
        )

    async def analyst_sql(self, sql: str, limits: AnalystLimits) -> AnalystResult:
        """Check and run one analyst query on the analyst lane (``LaneBusy`` if it is full).

        Raises :class:`AnalystSqlRefused` for a query the policy does not allow and
        :class:`EngineError` for one ClickHouse refuses (syntax, unknown column …).
        """
        if self._analyst.busy:
            raise LaneBusy
        return await self._analyst.run(lambda client: _run_analyst_sql(client, sql, limits))

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
