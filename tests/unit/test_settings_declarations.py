"""Every setting is declared once (variable, default, meaning) and the README shows exactly that."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.cli import settings_classes
from services.ingest.settings import IngestSettings
from services.masker.settings import MaskerSettings
from services.shared.env import (
    SettingError,
    declared_settings,
    from_env,
    setting,
    settings_table,
)
from services.shared.kafka import KafkaSettings
from services.sink.settings import SinkSettings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(
    r"^\| `(?P<name>[A-Z0-9_]+)` \| (?P<default>.*?) \| (?P<used_by>.*?) \| (?P<meaning>.*) \|$"
)


def readme_rows() -> dict[str, tuple[str, str, str]]:
    """The README's configuration table: variable -> (default, used by, meaning)."""
    text = README.read_text()
    table = text.split("<!-- settings-table:begin", 1)[1].split("<!-- settings-table:end", 1)[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            assert match["name"] not in rows, f"{match['name']} is in the README table twice"
            rows[match["name"]] = (match["default"], match["used_by"], match["meaning"])
    return rows


def test_the_readme_table_lists_every_declared_variable_with_its_default_and_meaning() -> None:
    declared = {
        s.name: (s.default, s.used_by, s.meaning) for s in declared_settings(settings_classes())
    }
    assert readme_rows() == declared, "run `.venv/bin/replaypipe settings` and paste the table"


def test_the_readme_table_is_the_generated_one_row_for_row() -> None:
    text = README.read_text()
    assert settings_table(settings_classes()) in text


def test_a_settings_field_without_an_environment_variable_is_refused() -> None:
    @dataclass(frozen=True)
    class Forgotten:
        port: int = setting("FORGOTTEN_PORT", 1, "a port")
        timeout_s: float = 3.0

    with pytest.raises(TypeError, match=r"Forgotten\.timeout_s is not declared with setting"):
        from_env(Forgotten, {})
    with pytest.raises(TypeError, match=r"Forgotten\.timeout_s"):
        declared_settings({"x": Forgotten})


def test_with_no_variables_set_every_service_gets_its_declared_defaults() -> None:
    assert from_env(IngestSettings, {}) == IngestSettings()
    assert from_env(MaskerSettings, {}) == MaskerSettings()
    assert from_env(SinkSettings, {}) == SinkSettings()


def test_variables_are_read_in_the_field_type() -> None:
    settings = from_env(
        SinkSettings,
        {"SINK_PORT": "9000", "SINK_BATCH_MAX_SECONDS": "0.25", "SINK_ADMIN_TOKEN": "t"},
    )
    assert (settings.port, settings.batch_max_seconds, settings.admin_token) == (9000, 0.25, "t")


def test_the_nested_kafka_settings_come_from_the_kafka_variables() -> None:
    settings = from_env(MaskerSettings, {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"


def test_an_empty_number_keeps_the_default_and_an_empty_text_is_a_value() -> None:
    settings = from_env(SinkSettings, {"SINK_PORT": "", "SINK_GROUP_ID": ""})
    assert (settings.port, settings.group_id) == (8082, "")


def test_a_list_is_comma_separated_and_trimmed() -> None:
    settings = from_env(MaskerSettings, {"MASKER_SENSITIVE_NAMES": " loyaltyno, membership ,"})
    assert settings.sensitive_names == ("loyaltyno", "membership")


def test_the_timestamp_skew_is_given_in_days_and_kept_in_milliseconds() -> None:
    settings = from_env(IngestSettings, {"INGEST_MAX_TIMESTAMP_SKEW_DAYS": "0.5"})
    assert settings.max_timestamp_skew_ms == 43_200_000


def test_a_value_that_is_not_a_number_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingError, match="SINK_BATCH_MAX_ROWS must be an integer, got 'lots'"):
        from_env(SinkSettings, {"SINK_BATCH_MAX_ROWS": "lots"})


def test_a_variable_declared_twice_must_mean_the_same_in_both() -> None:
    @dataclass(frozen=True)
    class One:
        port: int = setting("SHARED_PORT", 1, "a port")

    @dataclass(frozen=True)
    class Other:
        port: int = setting("SHARED_PORT", 2, "another port")

    with pytest.raises(SettingError, match="SHARED_PORT"):
        declared_settings({"one": One, "other": Other})


def test_a_variable_of_some_services_names_them() -> None:
    @dataclass(frozen=True)
    class One:
        kafka: KafkaSettings = field(default_factory=KafkaSettings)
        port: int = setting("ONE_PORT", 1, "a port")

    @dataclass(frozen=True)
    class Other:
        kafka: KafkaSettings = field(default_factory=KafkaSettings)

    used_by = {s.name: s.used_by for s in declared_settings({"one": One, "other": Other})}
    assert (used_by["ONE_PORT"], used_by["KAFKA_PARTITIONS"]) == ("one", "all")
