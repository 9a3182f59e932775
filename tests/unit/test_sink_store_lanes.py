"""The store's lanes: reads, writes and analyst SQL each on their own connections,
so none waits behind another (fake clients that block until released; no engine)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from services.sink.analyst_sql import AnalystLimits, AnalystSqlRefused
from services.sink.store import ClickHouseStore, EngineError, LaneBusy


class BlockingClient:
    """A clickhouse-connect stand-in whose calls wait for ``release`` (set to go at once)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[str] = []

    def _call(self, what: str) -> Any:
        self.calls.append(what)
        self.entered.set()
        assert self.release.wait(10), "the test never released this client"
        return type("Result", (), {"result_rows": [("ok",)]})()

    def create_insert_context(self, table: str, *args: Any, **kwargs: Any) -> Any:
        return type("Context", (), {"column_types": []})()

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(f"insert {table}")

    def command(self, sql: str, **kwargs: Any) -> Any:
        return self._call(sql)

    def query(self, sql: str, **kwargs: Any) -> Any:
        return self._call(sql)

    def raw_query(self, sql: str, **kwargs: Any) -> bytes:
        self._call(sql)
        return b""

    def close(self) -> None:
        self.calls.append("close")


def lanes() -> tuple[ClickHouseStore, BlockingClient, BlockingClient, BlockingClient]:
    writer, reader, analyst = BlockingClient(), BlockingClient(), BlockingClient()
    store = ClickHouseStore(writer, read_clients=[reader], analyst_clients=[analyst])
    return store, writer, reader, analyst


async def entered(client: BlockingClient) -> None:
    assert await asyncio.to_thread(client.entered.wait, 10)


async def test_a_read_does_not_wait_behind_an_insert_in_flight() -> None:
    store, writer, reader, _ = lanes()
    insert = asyncio.create_task(store.insert_columns("incoming_batches", [[1]], ["a"], "t"))
    await entered(writer)
    reader.release.set()
    result = await asyncio.wait_for(store.query("SELECT 1"), 10)
    assert result.result_rows == [("ok",)] and not insert.done()
    writer.release.set()
    await insert


async def test_an_insert_does_not_wait_behind_an_analyst_query() -> None:
    store, writer, _, analyst = lanes()
    sql = asyncio.create_task(store.analyst_sql("SELECT 1", AnalystLimits()))
    await entered(analyst)
    writer.release.set()
    await asyncio.wait_for(store.insert_columns("incoming_batches", [[1]], ["a"], "t"), 10)
    assert not sql.done()
    analyst.release.set()
    with pytest.raises(AnalystSqlRefused):  # the fake's answers are no parse tree
        await sql


async def test_a_second_analyst_query_while_one_runs_is_refused_at_once() -> None:
    store, _, _, analyst = lanes()
    first = asyncio.create_task(store.analyst_sql("SELECT 1", AnalystLimits()))
    await entered(analyst)
    with pytest.raises(LaneBusy):
        await store.analyst_sql("SELECT 2", AnalystLimits())
    analyst.release.set()
    with pytest.raises(AnalystSqlRefused):
        await first


async def test_reads_run_side_by_side_on_the_read_connections() -> None:
    first, second = BlockingClient(), BlockingClient()
    store = ClickHouseStore(BlockingClient(), read_clients=[first, second])
    one = asyncio.create_task(store.query("SELECT 1"))
    two = asyncio.create_task(store.query("SELECT 2"))
    await entered(first)
    await entered(second)  # both in flight at once
    first.release.set()
    second.release.set()
    await asyncio.gather(one, two)


async def test_a_cancelled_read_frees_its_connection_only_when_the_call_returns() -> None:
    reader = BlockingClient()
    store = ClickHouseStore(BlockingClient(), read_clients=[reader])
    read = asyncio.create_task(store.query("SELECT 1"))
    await entered(reader)
    read.cancel()
    second = asyncio.create_task(store.query("SELECT 2"))
    await asyncio.sleep(0.05)
    assert reader.calls == ["SELECT 1"]  # the connection is still busy with the first call
    reader.release.set()
    await asyncio.wait_for(second, 10)
    assert reader.calls == ["SELECT 1", "SELECT 2"]


async def test_an_engine_refusal_keeps_only_its_code_and_name() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    class Refusing(BlockingClient):
        def query(self, sql: str, **kwargs: Any) -> Any:
            raise DatabaseError("Cannot parse 'secret value'", code=457, name="BAD_QUERY_PARAMETER")

    store = ClickHouseStore(Refusing())
    with pytest.raises(EngineError) as info:
        await store.query("SELECT 1")
    assert (info.value.code, info.value.name) == (457, "BAD_QUERY_PARAMETER")
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_closing_the_store_closes_each_client_once() -> None:
    store, writer, reader, analyst = lanes()
    store.close()
    assert [c.calls for c in (writer, reader, analyst)] == [["close"]] * 3
    shared = BlockingClient()
    ClickHouseStore(shared).close()
    assert shared.calls == ["close"]


async def test_an_insert_error_reaches_the_writer_as_raised() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    class Refusing(BlockingClient):
        def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
            raise DatabaseError("replaypipe: message is not a valid envelope", code=395)

    store = ClickHouseStore(Refusing())
    with pytest.raises(DatabaseError, match="not a valid envelope"):
        await store.insert_columns("incoming_batches", [[1]], ["a"], "t")


class TypedClient:
    """A clickhouse-connect stand-in that records how inserts learn their column types."""

    def __init__(self, failures: int = 0) -> None:
        self.described: list[str] = []
        self.inserted_types: list[Any] = []
        self.failures = failures

    def create_insert_context(self, table: str, column_names: list[str], **kwargs: Any) -> Any:
        self.described.append(table)
        return type("Context", (), {"column_types": [f"type of {n}" for n in column_names]})()

    def insert(self, table: str, data: Any, **kwargs: Any) -> None:
        self.inserted_types.append(kwargs["column_types"])
        if self.failures:
            self.failures -= 1
            raise RuntimeError("ClickHouse is down")


async def test_an_insert_reads_its_column_types_once_not_before_every_insert() -> None:
    client = TypedClient()
    store = ClickHouseStore(client)
    for token in ("t1", "t2", "t3"):
        await store.insert_columns("incoming_batches", [[1], [2]], ["a", "b"], token)

    assert client.described == ["incoming_batches"]
    assert client.inserted_types == [["type of a", "type of b"]] * 3


async def test_a_failed_insert_reads_the_column_types_again_on_its_retry() -> None:
    client = TypedClient(failures=1)
    store = ClickHouseStore(client)
    with pytest.raises(RuntimeError):
        await store.insert_columns("incoming_batches", [[1]], ["a"], "t")
    await store.insert_columns("incoming_batches", [[1]], ["a"], "t")

    assert client.described == ["incoming_batches", "incoming_batches"]
