"""Masker settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import env_int, env_str
from services.shared.kafka import KafkaSettings


@dataclass(frozen=True)
class MaskerSettings:
    """Everything the masker reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8081
    app_id: str = "replaypipe-masker"
    sites_file: str = "config/sites.json"
    state_dir: str = "var/masker"
    session_idle_timeout_s: int = 3600
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def from_env(cls) -> MaskerSettings:
        """Read ``MASKER_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return cls(
            host=env_str("MASKER_HOST", cls.host),
            port=env_int("MASKER_PORT", cls.port),
            app_id=env_str("MASKER_APP_ID", cls.app_id),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            state_dir=env_str("MASKER_STATE_DIR", cls.state_dir),
            session_idle_timeout_s=env_int(
                "MASKER_SESSION_IDLE_TIMEOUT_S", cls.session_idle_timeout_s
            ),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
        )
