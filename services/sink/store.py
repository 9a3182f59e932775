"""ClickHouse access: opening the client (embedded chdb or a server) and migrations."""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import clickhouse_connect

log = logging.getLogger("replaypipe.sink.store")

MIGRATIONS_TABLE = "schema_migrations"


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


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every migration shipped with the sink, in order."""
    found = []
    for entry in resources.files("services.sink.migrations").iterdir():
        match = re.match(r"^(\d{4})_(.+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (``;`` at the end of a line)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*\n", body + "\n") if part.strip()]


def run_migrations(client: Any) -> list[int]:
    """Apply the migrations not yet recorded; idempotent. Returns versions applied."""
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        for statement in split_statements(sql):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[version, name]], column_names=["version", "name"])
        log.info("migration applied", extra={"count": version, "reason": name})
        applied.append(version)
    return applied
