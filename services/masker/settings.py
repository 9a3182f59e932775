"""Masker settings: each one declared once, with its variable, default and meaning."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.masker.sensitivity import DEFAULT_SENSITIVE_NAMES
from services.shared.env import (
    SettingError,
    from_env,
    log_level_setting,
    setting,
    sites_file_setting,
)
from services.shared.kafka import KafkaSettings
from services.shared.keyring import RawEncryptionSettings

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
    # A batch whose masking takes longer than this is not published: a DLQ
    # pointer (reason over_budget) instead, and the partition moves on.
    batch_budget_s: float = setting(
        "MASKER_BATCH_BUDGET_S",
        5.0,
        "a batch whose masking takes longer goes to the DLQ (`over_budget`), never unmasked",
    )
    stuck_after_s: float = setting(
        "MASKER_STUCK_AFTER_S",
        120.0,
        "a partition with lag and no commit this long fails `/readyz`;"
        " a batch masking this long fails `/healthz`",
    )
    # Big batches are masked in a worker thread, with the GIL released (the
    # compiled core parses, masks and writes them), so the ops endpoints, the
    # consumer's heartbeats and the Kafka client's work go on meanwhile. Smaller
    # ones stay on the loop: on a quiet machine 300 KB pages cost ~20 % more CPU
    # per event when they went to the thread (256 KiB) than on the loop (2 MiB),
    # and a batch below 2 MiB holds the loop for milliseconds
    # (docs/benchmarks.md, "Masking off the GIL (gilfree)").
    thread_batch_bytes: int = setting(
        "MASKER_THREAD_BATCH_BYTES",
        2_097_152,
        "batches at least this big are masked in a worker thread, off the GIL"
        " (probes and the Kafka client keep running)",
    )
    # A standby keeps a copy of another worker's session state, so a takeover
    # masks with it at once; it costs the standby CPU for every state change of
    # the partitions it follows (docs/operations.md, "Scale-out").
    standby_replicas: int = setting(
        "MASKER_STANDBY_REPLICAS",
        1,
        "workers that keep a warm copy of each partition's session state (faust standbys);"
        " 0 = a takeover restores the state from the changelog first",
    )
    # Below saturation a fetch would return each record on its own (faust's
    # fetch_min_bytes is 1): waiting a little for more bounds the fetches per
    # worker, so two workers sharing a rate cost about what one does.
    fetch_min_bytes: int = setting(
        "MASKER_FETCH_MIN_BYTES",
        1_048_576,
        "a fetch of `recordings.raw` (and a standby's changelog) returns once it has this"
        " many bytes, or after `MASKER_FETCH_MAX_WAIT_MS`",
    )
    fetch_max_wait_ms: int = setting(
        "MASKER_FETCH_MAX_WAIT_MS",
        100,
        "longest a fetch waits for `MASKER_FETCH_MIN_BYTES` (adds at most this to freshness)",
    )
    log_level: str = log_level_setting()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Opening sealed recordings.raw values (RAW_* variables, docs/security.md).
    raw_encryption: RawEncryptionSettings = field(default_factory=RawEncryptionSettings)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise SettingError(f"MASKER_COMPRESSION must be one of {COMPRESSIONS}")
        for name in (
            "session_idle_timeout_s",
            "eviction_interval_s",
            "lag_interval_s",
            "batch_budget_s",
            "stuck_after_s",
        ):
            if getattr(self, name) <= 0:
                raise SettingError(f"MASKER_{name.upper()} must be a positive number of seconds")
        if self.fetch_min_bytes < 1:
            raise SettingError("MASKER_FETCH_MIN_BYTES must be 1 or more bytes")
        if not 0 <= self.fetch_max_wait_ms <= 10_000:
            raise SettingError("MASKER_FETCH_MAX_WAIT_MS must be 0 to 10000 milliseconds")
        if self.standby_replicas < 0:
            raise SettingError("MASKER_STANDBY_REPLICAS must be 0 or more workers")
        if self.thread_batch_bytes < 0:
            raise SettingError("MASKER_THREAD_BATCH_BYTES must be 0 (always) or more bytes")

    @classmethod
    def from_env(cls) -> MaskerSettings:
        """``MASKER_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``; defaults for those unset."""
        return from_env(cls)
