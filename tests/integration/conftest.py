"""Fixtures of the integration tests that run the sink in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sink.store import ClickHouseStore, open_client, run_migrations


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    """One embedded store for the run (chdb hosts one engine path per process)."""
    path: Path = tmp_path_factory.mktemp("sink-store")
    client = open_client(f"chdb://{path}")
    run_migrations(client)
    yield ClickHouseStore(client)
    client.close()
