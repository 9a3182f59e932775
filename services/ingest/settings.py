"""Ingest settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import env_int, env_str
from services.shared.kafka import KafkaSettings


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest gateway reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8080
    sites_file: str = "config/sites.json"
    max_body_bytes: int = 10 * 1024 * 1024
    max_events_per_batch: int = 5000
    max_timestamp_skew_ms: int = 7 * 86_400_000
    publish_timeout_s: float = 10.0
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def from_env(cls) -> IngestSettings:
        """Read ``INGEST_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return cls(
            host=env_str("INGEST_HOST", cls.host),
            port=env_int("INGEST_PORT", cls.port),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            max_body_bytes=env_int("INGEST_MAX_BODY_BYTES", cls.max_body_bytes),
            max_events_per_batch=env_int("INGEST_MAX_EVENTS_PER_BATCH", cls.max_events_per_batch),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
        )
