"""How the sink reaches ClickHouse: the URL, the user, the password file and the CA.

The embedded engine (``chdb://``) has no network and no users; a server is
reached over ``http(s)://`` as a user of its own per service and lane (the
writer and read API as ``CLICKHOUSE_USER``, analyst SQL as a read-only
``SINK_SQL_CLICKHOUSE_USER``). Over ``https`` the server's certificate is always
verified, against ``CLICKHOUSE_CA_FILE`` or the system trust store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.shared.env import SettingError, read_secret_file


@dataclass(frozen=True, slots=True)
class ClickHouseConnection:
    """One lane's connection; ``*_variable`` name the settings in error messages."""

    url: str
    user: str = ""
    password_file: str = ""
    ca_file: str = ""
    url_variable: str = "CLICKHOUSE_URL"
    password_variable: str = "CLICKHOUSE_PASSWORD_FILE"

    @property
    def embedded(self) -> bool:
        """Whether this is the in-process engine (chdb)."""
        return self.url.startswith("chdb:")


def resolve_clickhouse_url(url: str) -> str:
    """Make a relative embedded path absolute: ``chdb://var/ch`` → ``chdb:///cwd/var/ch``."""
    if url.startswith("chdb://") and not url.startswith("chdb:///"):
        path = Path(url.removeprefix("chdb://")).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return f"chdb://{path}"
    if url.startswith("chdb:///"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return url


def client_kwargs(connection: ClickHouseConnection) -> dict[str, Any]:
    """``clickhouse_connect.get_client`` arguments: ``dsn`` and, for a server, the
    user, the password (read from its file) and certificate verification."""
    kwargs: dict[str, Any] = {"dsn": resolve_clickhouse_url(connection.url)}
    if connection.embedded:
        return kwargs
    if connection.user:
        kwargs["username"] = connection.user  # wins over a user in the URL
    if connection.password_file:
        kwargs["password"] = read_secret_file(
            connection.password_variable, connection.password_file
        )
    if connection.url.startswith("https://"):
        kwargs["verify"] = True
        if connection.ca_file:
            kwargs["ca_cert"] = connection.ca_file
    elif connection.ca_file:
        # Refuse rather than talk in clear while the operator thinks TLS is on.
        raise SettingError(
            f"CLICKHOUSE_CA_FILE is set but {connection.url_variable} is not https://"
        )
    return kwargs
