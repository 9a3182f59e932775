"""The sink's ClickHouse connections: embedded as is; a server as its user, over verified TLS.

No ClickHouse server runs here (the tests use the embedded chdb engine), so these
check the arguments clickhouse-connect is given, not a TLS handshake with a server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.shared.env import SettingError, from_env
from services.sink.connection import ClickHouseConnection, client_kwargs
from services.sink.settings import SinkSettings


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    (tmp_path / "writer").write_text("writer-pw\n")
    (tmp_path / "analyst").write_text("analyst-pw")
    return tmp_path


def test_the_embedded_engine_gets_only_its_path(tmp_path: Path) -> None:
    kwargs = client_kwargs(ClickHouseConnection(f"chdb://{tmp_path}/ch", user="ignored"))
    assert kwargs == {"dsn": f"chdb://{tmp_path}/ch"}


def test_an_https_server_is_verified_against_the_ca_as_the_configured_user(
    secret_dir: Path,
) -> None:
    settings = from_env(
        SinkSettings,
        {
            "CLICKHOUSE_URL": "https://clickhouse:8443/replaypipe",
            "CLICKHOUSE_USER": "replaypipe_sink",
            "CLICKHOUSE_PASSWORD_FILE": str(secret_dir / "writer"),
            "CLICKHOUSE_CA_FILE": "/var/run/secrets/clickhouse-ca/ca.crt",
        },
    )
    assert client_kwargs(settings.clickhouse()) == {
        "dsn": "https://clickhouse:8443/replaypipe",
        "username": "replaypipe_sink",
        "password": "writer-pw",
        "verify": True,
        "ca_cert": "/var/run/secrets/clickhouse-ca/ca.crt",
    }


def test_https_without_a_ca_file_verifies_against_the_system_trust_store() -> None:
    kwargs = client_kwargs(ClickHouseConnection("https://clickhouse:8443/db"))
    assert kwargs["verify"] is True and "ca_cert" not in kwargs


def test_analyst_sql_connects_as_its_own_read_only_user_with_its_own_password(
    secret_dir: Path,
) -> None:
    settings = from_env(
        SinkSettings,
        {
            "CLICKHOUSE_URL": "https://clickhouse:8443/replaypipe",
            "CLICKHOUSE_USER": "replaypipe_sink",
            "CLICKHOUSE_PASSWORD_FILE": str(secret_dir / "writer"),
            "CLICKHOUSE_CA_FILE": "/ca.crt",
            "SINK_SQL_CLICKHOUSE_USER": "replaypipe_analyst",
            "SINK_SQL_CLICKHOUSE_PASSWORD_FILE": str(secret_dir / "analyst"),
        },
    )
    kwargs = client_kwargs(settings.analyst_clickhouse())
    assert kwargs["dsn"] == "https://clickhouse:8443/replaypipe"
    assert (kwargs["username"], kwargs["password"]) == ("replaypipe_analyst", "analyst-pw")
    assert kwargs["ca_cert"] == "/ca.crt"


def test_an_analyst_user_without_a_password_file_does_not_get_the_writers_password(
    secret_dir: Path,
) -> None:
    settings = SinkSettings(
        clickhouse_url="https://clickhouse:8443/db",
        clickhouse_password_file=str(secret_dir / "writer"),
        sql_clickhouse_user="replaypipe_analyst",
    )
    assert "password" not in client_kwargs(settings.analyst_clickhouse())


def test_analyst_sql_without_settings_of_its_own_uses_the_writers_connection(
    secret_dir: Path,
) -> None:
    settings = SinkSettings(
        clickhouse_url="https://clickhouse:8443/db",
        clickhouse_user="replaypipe_sink",
        clickhouse_password_file=str(secret_dir / "writer"),
    )
    assert client_kwargs(settings.analyst_clickhouse()) == client_kwargs(settings.clickhouse())


def test_a_missing_password_file_names_the_variable(tmp_path: Path) -> None:
    settings = SinkSettings(
        clickhouse_url="http://ch:8123/db",
        sql_clickhouse_user="analyst",
        sql_clickhouse_password_file=str(tmp_path / "absent"),
    )
    with pytest.raises(SettingError, match="SINK_SQL_CLICKHOUSE_PASSWORD_FILE: cannot read"):
        client_kwargs(settings.analyst_clickhouse())


def test_a_ca_file_with_a_plain_http_url_is_refused() -> None:
    connection = SinkSettings(
        clickhouse_url="http://ch:8123/db", clickhouse_ca_file="/ca.crt"
    ).clickhouse()
    with pytest.raises(SettingError, match="CLICKHOUSE_CA_FILE is set but CLICKHOUSE_URL"):
        client_kwargs(connection)
