"""``replaypipe users create`` and ``replaypipe sites get|set|history`` on a real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from services.console.state_feed import load_state
from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.kafka import KafkaSettings
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.integration


def replaypipe(
    broker: LocalKafkaBroker, sites_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=PROJECT_ROOT,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "SITES_FILE": str(sites_file),
            "PATH": "/usr/bin:/bin",
            "USER": "ops",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def site(tmp_path: Path) -> tuple[str, Path]:
    site_id = f"cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "sites.json"
    path.write_bytes(orjson.dumps({"sites": [{"site_id": site_id, "public_keys": ["pk_cli"]}]}))
    return site_id, path


def test_users_create_prints_a_one_time_password_once(
    kafka_broker: LocalKafkaBroker, site: tuple[str, Path]
) -> None:
    site_id, sites_file = site
    email = f"ops@{site_id}.test"
    first = replaypipe(kafka_broker, sites_file, "users", "create", "--site", site_id, email)
    assert first.returncode == 0, first.stderr
    assert "one-time password" in first.stdout
    again = replaypipe(kafka_broker, sites_file, "users", "create", email)
    assert again.returncode == 1 and "exists already" in again.stderr
    state = asyncio.run(load_state(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)))
    account = state.account(email)
    assert account is not None and account.must_change_password
    assert account.password_hash.startswith("$argon2id$")
    assert state.role(email, site_id) == "owner"


def test_sites_set_validates_publishes_and_records_history(
    kafka_broker: LocalKafkaBroker, site: tuple[str, Path]
) -> None:
    site_id, sites_file = site
    changed = replaypipe(
        kafka_broker,
        sites_file,
        "sites",
        "set",
        site_id,
        "record_inputs=true",
        "mask_text_selectors=.price;#account h2",
    )
    assert changed.returncode == 0, changed.stderr
    assert "record_inputs: false -> true" in changed.stdout
    got = replaypipe(kafka_broker, sites_file, "sites", "get", site_id)
    doc = orjson.loads(got.stdout)
    assert doc["record_inputs"] is True
    assert doc["mask_text_selectors"] == [".price", "#account h2"]
    history = replaypipe(kafka_broker, sites_file, "sites", "history", site_id)
    assert "cli:ops" in history.stdout and "record_inputs" in history.stdout


def test_sites_set_refuses_a_bad_value_and_names_the_field(
    kafka_broker: LocalKafkaBroker, site: tuple[str, Path]
) -> None:
    site_id, sites_file = site
    refused = replaypipe(kafka_broker, sites_file, "sites", "set", site_id, "sample_rate=3")
    assert refused.returncode == 1
    assert "sample_rate" in refused.stderr
    got = orjson.loads(replaypipe(kafka_broker, sites_file, "sites", "get", site_id).stdout)
    assert got["sample_rate"] == 1.0
