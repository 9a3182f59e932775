"""``replaypipe migrate`` and ``replaypipe erase``: the sink's command-line tools."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.sink.schema import migration_table_ddl, planned_statements
from services.sink.settings import SinkSettings


def migrate(argv: list[str]) -> int:
    """Apply (or with ``--print`` show) the schema migrations, optionally ``ON CLUSTER``."""
    parser = argparse.ArgumentParser(prog="replaypipe migrate")
    parser.add_argument("--cluster", help="ClickHouse cluster name: apply the cluster variant")
    parser.add_argument("--print", action="store_true", help="print the DDL, apply nothing")
    args = parser.parse_args(argv)
    if args.print:
        print(migration_table_ddl(args.cluster) + ";\n")
        for version, name, statements in planned_statements(args.cluster):
            print(f"-- {version:04d}_{name}")
            for statement in statements:
                print(statement + ";\n")
        return 0
    from services.sink.store import open_client, run_migrations

    applied = run_migrations(open_client(SinkSettings.from_env().clickhouse()), args.cluster)
    print("applied:", applied or "nothing (schema up to date)")
    return 0


def erase(argv: list[str]) -> int:
    """Delete one session or all sessions of a visitor from events and sessions."""
    parser = argparse.ArgumentParser(
        prog="replaypipe erase",
        description="GDPR erasure. Uses CLICKHOUSE_URL; with the embedded engine stop the "
        "sink first (one process per store) or call the sink's DELETE endpoints instead.",
    )
    parser.add_argument("--site", required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--session")
    target.add_argument("--visitor")
    args = parser.parse_args(argv)
    from services.sink.store import ClickHouseStore, open_client

    try:
        client = open_client(SinkSettings.from_env().clickhouse())
    except Exception as exc:
        print(
            f"replaypipe erase: cannot open ClickHouse ({type(exc).__name__}). With the "
            "embedded engine the running sink holds the store: stop it, or use "
            "DELETE /v1/sites/{site}/sessions/{session} on the sink.",
            file=sys.stderr,
        )
        return 1
    store = ClickHouseStore(client)
    erasure = asyncio.run(store.erase(args.site, session_id=args.session, visitor_id=args.visitor))
    client.close()
    print(f"erased {len(erasure.session_ids)} session(s) of site {erasure.site_id}")
    return 0
