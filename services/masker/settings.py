"""Masker settings, from environment variables (defaults in docs/masker-operations.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.masker.rules import DEFAULT_SENSITIVE_NAMES
from services.shared.env import SettingError, env_float, env_int, env_list, env_str
from services.shared.kafka import KafkaSettings
from services.shared.keyring import RawEncryptionSettings

COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", "none")


@dataclass(frozen=True)
class MaskerSettings:
    """Everything the masker reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8081
    app_id: str = "replaypipe-masker"
    sites_file: str = "config/sites.json"
    state_dir: str = "var/masker"
    # A session with no batch for this long is forgotten; a later batch of it is
    # masked conservatively until its next full snapshot.
    session_idle_timeout_s: float = 3600.0
    eviction_interval_s: float = 60.0
    lag_interval_s: float = 10.0
    # Producer compression of recordings.masked: zstd is cheaper on CPU than
    # aiokafka's lz4 (which compresses at level 9) and smaller; "none" turns it off.
    compression: str = "zstd"
    # Field name/id words that are always masked, whatever the site settings.
    sensitive_names: tuple[str, ...] = DEFAULT_SENSITIVE_NAMES
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Opening sealed recordings.raw values (RAW_* variables, docs/security.md).
    raw_encryption: RawEncryptionSettings = field(default_factory=RawEncryptionSettings)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise SettingError(f"MASKER_COMPRESSION must be one of {COMPRESSIONS}")
        for name in ("session_idle_timeout_s", "eviction_interval_s", "lag_interval_s"):
            if getattr(self, name) <= 0:
                raise SettingError(f"MASKER_{name.upper()} must be a positive number of seconds")

    @classmethod
    def from_env(cls) -> MaskerSettings:
        """Read ``MASKER_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return cls(
            host=env_str("MASKER_HOST", cls.host),
            port=env_int("MASKER_PORT", cls.port),
            app_id=env_str("MASKER_APP_ID", cls.app_id),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            state_dir=env_str("MASKER_STATE_DIR", cls.state_dir),
            session_idle_timeout_s=env_float(
                "MASKER_SESSION_IDLE_TIMEOUT_S", cls.session_idle_timeout_s
            ),
            eviction_interval_s=env_float("MASKER_EVICTION_INTERVAL_S", cls.eviction_interval_s),
            lag_interval_s=env_float("MASKER_LAG_INTERVAL_S", cls.lag_interval_s),
            compression=env_str("MASKER_COMPRESSION", cls.compression),
            sensitive_names=env_list("MASKER_SENSITIVE_NAMES", cls.sensitive_names),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
            raw_encryption=RawEncryptionSettings.from_env(),
        )
