"""Every metric the alerts and the dashboard use (deploy/metrics.txt) is on a running service."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.request import urlopen

import pytest

from services.dev.stack import LocalStack

pytestmark = pytest.mark.integration

CONTRACT = Path(__file__).resolve().parents[2] / "deploy" / "metrics.txt"
SERVICE_OF_PREFIX = {
    "replaypipe_ingest_": "ingest",
    "replaypipe_masker_": "masker",
    "replaypipe_sink_": "sink",
}


def contract_families() -> dict[str, list[str]]:
    """Metric names from the contract file, grouped by the service that must expose them."""
    by_service: dict[str, list[str]] = {name: [] for name in SERVICE_OF_PREFIX.values()}
    for line in CONTRACT.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        service = next(s for p, s in SERVICE_OF_PREFIX.items() if name.startswith(p))
        by_service[service].append(name)
    return by_service


def exposed_families(port: int) -> set[str]:
    """Names a /metrics page declares (``# TYPE`` lines), with ``_total`` for counters."""
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    names: set[str] = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = match.groups()
        names.add(f"{name}_total" if kind == "counter" and not name.endswith("_total") else name)
    return names


def test_every_contract_metric_is_exposed_by_its_running_service(pipeline: LocalStack) -> None:
    ports = {
        "ingest": pipeline.ingest_port,
        "masker": pipeline.masker_port,
        "sink": pipeline.sink_port,
    }
    missing = {
        service: sorted(set(names) - exposed_families(ports[service]))
        for service, names in contract_families().items()
    }
    assert all(not names for names in missing.values()), missing
