"""The schema as DDL: the shipped migrations, and their cluster variant (pure).

The migrations in ``migrations/NNNN_name.sql`` are single-node DDL that runs
unchanged on the embedded engine and on a ClickHouse server. For a cluster
(deploy/k8s: Altinity operator, cluster ``replaypipe``) :func:`cluster_statements`
derives the variant mechanically, so there is one schema, not two:

- each ``CREATE TABLE name … ENGINE = XMergeTree`` becomes ``name_local`` with
  ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/name_local', '{replica}')``
  ``ON CLUSTER``, plus ``name`` as a ``Distributed`` table over it, sharded by
  ``cityHash64(site_id, session_id)`` so a session's rows live on one shard
  (FINAL and per-session aggregation stay shard-local);
- a ``Null`` table stays ``Null`` (per shard) behind its ``Distributed`` table;
- a materialized view reads and writes the ``_local`` tables on every shard;
- a plain view reads the ``Distributed`` tables;
- ``ALTER``/``DELETE`` statements go to the ``_local`` tables ``ON CLUSTER``;
  ``ALTER TABLE view MODIFY QUERY`` changes a materialized view on every shard
  (the view keeps its name, its query reads the ``_local`` tables).
"""

from __future__ import annotations

import re
from importlib import resources

SHARDING_KEY = "cityHash64(site_id, session_id)"
LOCAL_SUFFIX = "_local"

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\(", re.IGNORECASE)
_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) AS", re.IGNORECASE)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\s", re.IGNORECASE)
_MODIFY_QUERY = re.compile(r"^ALTER TABLE (\w+) MODIFY QUERY\b", re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE = (\w*MergeTree|Null)\b(\(\))?")


class SchemaError(ValueError):
    """A migration statement the cluster variant cannot translate (names the statement)."""


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


def table_names(statements: list[str]) -> list[str]:
    """Names of the tables (not views) the statements create."""
    return [m.group(1) for s in statements if (m := _CREATE_TABLE.match(s))]


def cluster_statements(statements: list[str], cluster: str, tables: list[str]) -> list[str]:
    """The cluster variant of single-node statements; ``tables`` are all schema tables."""
    if not re.fullmatch(r"[A-Za-z_][\w-]*", cluster):
        raise SchemaError(f"cluster name {cluster!r} is not a plain identifier")
    out: list[str] = []
    for statement in statements:
        out.extend(_cluster_statement(statement, cluster, tables))
    return out


def _localize(sql: str, tables: list[str]) -> str:
    for table in tables:
        sql = re.sub(rf"\b(FROM|TO|JOIN) {table}\b", rf"\1 {table}{LOCAL_SUFFIX}", sql)
    return sql


def _cluster_statement(statement: str, cluster: str, tables: list[str]) -> list[str]:
    on_cluster = f"ON CLUSTER '{cluster}'"
    if match := _CREATE_TABLE.match(statement):
        name = match.group(1)
        local = name + LOCAL_SUFFIX
        engine = _ENGINE.search(statement)
        if engine is None:
            raise SchemaError(f"table {name}: only *MergeTree and Null engines are translated")
        kind = engine.group(1)
        replicated = (
            "Null"
            if kind == "Null"
            else f"Replicated{kind}('/clickhouse/tables/{{shard}}/{{database}}/{local}', "
            "'{replica}')"
        )
        local_ddl = (
            f"CREATE TABLE IF NOT EXISTS {local} {on_cluster} "
            + statement[match.end() - 1 : engine.start()]
            + f"ENGINE = {replicated}"
            + statement[engine.end() :]
        )
        local_ddl = local_ddl.replace(
            "non_replicated_deduplication_window", "replicated_deduplication_window"
        )
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name} {on_cluster} AS {local}\n"
            f"ENGINE = Distributed('{cluster}', currentDatabase(), {local}, {SHARDING_KEY})"
        )
        return [local_ddl, distributed]
    if match := _CREATE_MV.match(statement):
        head = (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {match.group(1)} {on_cluster} "
            f"TO {match.group(2)}{LOCAL_SUFFIX} AS"
        )
        return [head + _localize(statement[match.end() :], tables)]
    if match := _CREATE_VIEW.match(statement):
        return [
            f"CREATE VIEW IF NOT EXISTS {match.group(1)} {on_cluster} AS" + statement[match.end() :]
        ]
    if (match := _MODIFY_QUERY.match(statement)) and match.group(1) not in tables:
        return [
            f"ALTER TABLE {match.group(1)} {on_cluster} MODIFY QUERY"
            + _localize(statement[match.end() :], tables)
        ]
    if match := _ALTER.match(statement):
        return [
            f"ALTER TABLE {match.group(1)}{LOCAL_SUFFIX} {on_cluster} " + statement[match.end() :]
        ]
    raise SchemaError(f"no cluster translation for statement: {statement[:80]!r}")


def migration_table_ddl(cluster: str | None) -> str:
    """DDL of the table recording applied migrations (replicated to every node on a cluster)."""
    columns = "(version UInt32, name String, applied_at DateTime DEFAULT now())"
    if cluster is None:
        return (
            f"CREATE TABLE IF NOT EXISTS schema_migrations {columns} "
            "ENGINE = MergeTree ORDER BY version"
        )
    # One Keeper path without {shard}: every node of every shard shares the rows.
    return (
        f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER '{cluster}' {columns} "
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/all/{database}/schema_migrations', '{shard}-{replica}') "
        "ORDER BY version"
    )


def planned_statements(cluster: str | None) -> list[tuple[int, str, list[str]]]:
    """``(version, name, statements)`` per migration, for one node or a cluster."""
    shipped = migrations()
    every_table = [t for _, _, sql in shipped for t in table_names(split_statements(sql))]
    plan = []
    for version, name, sql in shipped:
        statements = split_statements(sql)
        if cluster is not None:
            statements = cluster_statements(statements, cluster, every_table)
        plan.append((version, name, statements))
    return plan
