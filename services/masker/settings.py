"""Masker settings: each one declared once, with its variable, default and meaning."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.masker.rules import DEFAULT_SENSITIVE_NAMES
from services.shared.env import (
    SettingError,
    from_env,
    log_level_setting,
    setting,
    sites_file_setting,
)
from services.shared.kafka import KafkaSettings

COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "none")


@dataclass(frozen=True)
class MaskerSettings:
    """Everything the masker reads from the environment."""

    host: str = setting("MASKER_HOST", "0.0.0.0", "ops endpoints' listen address")
    port: int = setting(
        "MASKER_PORT", 8081, "ops endpoints' port (`/metrics`, `/healthz`, `/readyz`)"
    )
    app_id: str = setting(
        "MASKER_APP_ID",
        "replaypipe-masker",
        "faust app id (consumer group, changelog topic prefix)",
    )
    sites_file: str = sites_file_setting()
    state_dir: str = setting("MASKER_STATE_DIR", "var/masker", "faust data folder")
    # A session with no batch for this long is forgotten; a later batch of it is
    # masked conservatively until its next full snapshot.
    session_idle_timeout_s: float = setting(
        "MASKER_SESSION_IDLE_TIMEOUT_S",
        3600.0,
        "session state is evicted after this much inactivity",
    )
    eviction_interval_s: float = setting(
        "MASKER_EVICTION_INTERVAL_S", 60.0, "how often idle sessions are evicted from state"
    )
    lag_interval_s: float = setting(
        "MASKER_LAG_INTERVAL_S",
        10.0,
        "how often `replaypipe_masker_consumer_lag` is refreshed",
    )
    # zstd is cheaper on CPU than aiokafka's lz4 (which compresses at level 9) and smaller.
    compression: str = setting(
        "MASKER_COMPRESSION",
        "zstd",
        "producer compression of `recordings.masked`: `zstd`, `lz4`, `gzip`, `snappy`, `none`",
    )
    sensitive_names: tuple[str, ...] = setting(
        "MASKER_SENSITIVE_NAMES",
        DEFAULT_SENSITIVE_NAMES,
        "comma-separated words; a field whose name/id contains one is always masked,"
        " whatever the site settings",
        shown_default="`card,cvv,cvc,iban,ssn,…` (`DEFAULT_SENSITIVE_NAMES` in the masker)",
    )
    log_level: str = log_level_setting()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise SettingError(f"MASKER_COMPRESSION must be one of {COMPRESSIONS}")
        for name in ("session_idle_timeout_s", "eviction_interval_s", "lag_interval_s"):
            if getattr(self, name) <= 0:
                raise SettingError(f"MASKER_{name.upper()} must be a positive number of seconds")

    @classmethod
    def from_env(cls) -> MaskerSettings:
        """``MASKER_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``; defaults for those unset."""
        return from_env(cls)
