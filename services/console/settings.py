"""Console settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.console.state import TotpSealer
from services.shared.env import (
    SettingError,
    from_env,
    log_level_setting,
    setting,
    sites_file_setting,
)
from services.shared.kafka import KafkaSettings


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything the console reads from the environment."""

    host: str = setting("CONSOLE_HOST", "0.0.0.0", "console's listen address")
    port: int = setting("CONSOLE_PORT", 8083, "console's port (login, settings, replay)")
    # The sink's read API, reached with the sink's admin token as the console's
    # service credential (the console checks the person's role first).
    sink_url: str = setting(
        "CONSOLE_SINK_URL",
        "http://127.0.0.1:8082",
        "the sink's read API, as the console reaches it",
    )
    sink_admin_token: str = setting(
        "SINK_ADMIN_TOKEN",
        "",
        "bearer token for admin endpoints (SQL, any site)",
        shown_default="empty (disabled)",
    )
    sink_admin_token_file: str = setting(
        "SINK_ADMIN_TOKEN_FILE",
        "",
        "file holding the sink's admin token (the console's service credential); wins over"
        " `SINK_ADMIN_TOKEN`",
    )
    sites_file: str = sites_file_setting()
    # Signs CSRF and replay tokens; every replica needs the same one.
    secret_key: str = setting(
        "CONSOLE_SECRET_KEY",
        "",
        "signs CSRF and replay tokens, the same on every replica; empty = random per process",
        shown_default="empty (random per process, with a warning)",
    )
    secret_key_file: str = setting(
        "CONSOLE_SECRET_KEY_FILE", "", "file holding `CONSOLE_SECRET_KEY` (wins over it)"
    )
    # Its own key, so that rotating CONSOLE_SECRET_KEY does not make enrolled
    # seeds unreadable; without one the key is derived from CONSOLE_SECRET_KEY.
    totp_key_file: str = setting(
        "CONSOLE_TOTP_KEY_FILE",
        "",
        "file holding the key (base64 of 32 bytes) that seals TOTP seeds in `console.state`;"
        " empty = derived from `CONSOLE_SECRET_KEY`, or seeds in clear without one",
    )
    cookie_secure: str = setting(
        "CONSOLE_COOKIE_SECURE",
        "auto",
        "`auto` (Secure cookies when served over TLS), `true` or `false`",
    )
    session_idle_s: float = setting(
        "CONSOLE_SESSION_IDLE_S", 30 * 60.0, "a login session ends after this much inactivity"
    )
    session_absolute_s: float = setting(
        "CONSOLE_SESSION_ABSOLUTE_S", 12 * 3600.0, "a login session ends this long after login"
    )
    password_min_length: int = setting(
        "CONSOLE_PASSWORD_MIN_LENGTH", 12, "shortest password accepted"
    )
    login_max_failures_per_account: int = setting(
        "CONSOLE_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        5,
        "failed logins of one account within the window before it is throttled",
    )
    login_max_failures_per_address: int = setting(
        "CONSOLE_LOGIN_MAX_FAILURES_PER_ADDRESS",
        20,
        "failed logins from one client address within the window before it is throttled",
    )
    login_failure_window_s: float = setting(
        "CONSOLE_LOGIN_FAILURE_WINDOW_S", 15 * 60.0, "the login throttling window"
    )
    require_totp_for_owners: bool = setting(
        "CONSOLE_REQUIRE_TOTP_FOR_OWNERS",
        False,
        "owners and admins must set up two-factor (TOTP) before anything else",
        parse=_parse_bool,
    )
    ingest_url: str = setting(
        "CONSOLE_INGEST_URL",
        "http://127.0.0.1:8080",
        "the ingest address shown in the recorder snippet",
    )
    first_admin_email: str = setting(
        "CONSOLE_FIRST_ADMIN_EMAIL",
        "admin@localhost",
        "the instance admin `replaypipe run` creates on its first run",
    )
    log_level: str = log_level_setting()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    def __post_init__(self) -> None:
        cookie_secure = self.cookie_secure.strip().lower()
        if cookie_secure not in ("auto", "true", "false"):
            raise SettingError("CONSOLE_COOKIE_SECURE must be auto, true or false")
        object.__setattr__(self, "cookie_secure", cookie_secure)
        object.__setattr__(self, "sink_url", self.sink_url.rstrip("/"))
        object.__setattr__(self, "ingest_url", self.ingest_url.rstrip("/"))
        # A secret from NAME_FILE (a path, preferred) or NAME.
        if self.sink_admin_token_file:
            object.__setattr__(
                self,
                "sink_admin_token",
                _read_secret("SINK_ADMIN_TOKEN_FILE", self.sink_admin_token_file),
            )
        if self.secret_key_file:
            object.__setattr__(
                self, "secret_key", _read_secret("CONSOLE_SECRET_KEY_FILE", self.secret_key_file)
            )

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        """Read ``CONSOLE_*``, ``SINK_ADMIN_TOKEN*``, ``SITES_FILE``, ``KAFKA_*``, ``LOG_LEVEL``."""
        return from_env(cls)

    def totp_sealer(self) -> TotpSealer | None:
        """What seals TOTP seeds at rest: from ``CONSOLE_TOTP_KEY_FILE``, else derived from
        ``CONSOLE_SECRET_KEY``; None when neither is set (seeds then stay in clear)."""
        if self.totp_key_file:
            text = _read_secret("CONSOLE_TOTP_KEY_FILE", self.totp_key_file)
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise SettingError(
                    "CONSOLE_TOTP_KEY_FILE must hold base64 of 32 random bytes"
                    " (openssl rand -base64 32)"
                )
            return TotpSealer(key)
        if self.secret_key:
            # A key of its own purpose: the signing key itself never encrypts.
            hkdf = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"replaypipe-console-totp"
            )
            return TotpSealer(hkdf.derive(self.secret_key.encode()))
        return None

    def signing_key(self) -> str:
        """The CSRF signing key; without one configured, a random one for this process only."""
        return self.secret_key or _PROCESS_KEY


_PROCESS_KEY = secrets.token_urlsafe(32)


def _read_secret(variable: str, path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingError(f"{variable}: cannot read {path}: {exc.strerror}") from None
