"""Console settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from services.shared.env import SettingError, env_bool, env_float, env_int, env_str
from services.shared.kafka import KafkaSettings


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything the console reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8083
    # The sink's read API, reached with the sink's admin token as the console's
    # service credential (the console checks the person's role first).
    sink_url: str = "http://127.0.0.1:8082"
    sink_admin_token: str = ""
    sites_file: str = "config/sites.json"
    # Signs CSRF tokens; every replica needs the same one.
    secret_key: str = ""
    cookie_secure: str = "auto"  # auto: Secure when the request came over TLS
    session_idle_s: float = 30 * 60
    session_absolute_s: float = 12 * 3600
    password_min_length: int = 12
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window_s: float = 15 * 60
    require_totp_for_owners: bool = False
    ingest_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        """Read ``CONSOLE_*``, ``SINK_ADMIN_TOKEN``, ``SITES_FILE``, ``KAFKA_*``, ``LOG_LEVEL``."""
        cookie_secure = env_str("CONSOLE_COOKIE_SECURE", cls.cookie_secure).strip().lower()
        if cookie_secure not in ("auto", "true", "false"):
            raise SettingError("CONSOLE_COOKIE_SECURE must be auto, true or false")
        return cls(
            host=env_str("CONSOLE_HOST", cls.host),
            port=env_int("CONSOLE_PORT", cls.port),
            sink_url=env_str("CONSOLE_SINK_URL", cls.sink_url).rstrip("/"),
            sink_admin_token=_secret("SINK_ADMIN_TOKEN"),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            secret_key=_secret("CONSOLE_SECRET_KEY"),
            cookie_secure=cookie_secure,
            session_idle_s=env_float("CONSOLE_SESSION_IDLE_S", cls.session_idle_s),
            session_absolute_s=env_float("CONSOLE_SESSION_ABSOLUTE_S", cls.session_absolute_s),
            password_min_length=env_int("CONSOLE_PASSWORD_MIN_LENGTH", cls.password_min_length),
            login_max_failures_per_account=env_int(
                "CONSOLE_LOGIN_MAX_FAILURES_PER_ACCOUNT", cls.login_max_failures_per_account
            ),
            login_max_failures_per_address=env_int(
                "CONSOLE_LOGIN_MAX_FAILURES_PER_ADDRESS", cls.login_max_failures_per_address
            ),
            login_failure_window_s=env_float(
                "CONSOLE_LOGIN_FAILURE_WINDOW_S", cls.login_failure_window_s
            ),
            require_totp_for_owners=env_bool(
                "CONSOLE_REQUIRE_TOTP_FOR_OWNERS", cls.require_totp_for_owners
            ),
            ingest_url=env_str("CONSOLE_INGEST_URL", cls.ingest_url).rstrip("/"),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
        )

    def signing_key(self) -> str:
        """The CSRF signing key; without one configured, a random one for this process only."""
        return self.secret_key or _PROCESS_KEY


_PROCESS_KEY = secrets.token_urlsafe(32)


def _secret(name: str) -> str:
    """A secret from ``NAME_FILE`` (a path, preferred) or ``NAME``."""
    path = env_str(f"{name}_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SettingError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return env_str(name, "")
