"""Ingest settings: each one declared once, with its variable, default and meaning."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import (
    SettingError,
    days_as_ms,
    from_env,
    log_level_setting,
    setting,
    sites_file_setting,
)
from services.shared.kafka import KafkaSettings
from services.shared.keyring import RawEncryptionSettings


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest gateway reads from the environment."""

    host: str = setting("INGEST_HOST", "0.0.0.0", "HTTP listen address")
    port: int = setting("INGEST_PORT", 8080, "HTTP listen port")
    sites_file: str = sites_file_setting()
    # Bytes on the wire (compressed or not) and after decompression: the second
    # one is what a gzip bomb would blow up, so it is enforced while inflating.
    max_body_bytes: int = setting("INGEST_MAX_BODY_BYTES", 10 * 1024 * 1024, "largest request body")
    max_decoded_bytes: int = setting(
        "INGEST_MAX_DECODED_BYTES",
        10 * 1024 * 1024,
        "largest body after gzip/deflate decompression (gzip bombs stop here)",
    )
    max_events_per_batch: int = setting(
        "INGEST_MAX_EVENTS_PER_BATCH", 5000, "most events in one batch"
    )
    max_timestamp_skew_ms: int = setting(
        "INGEST_MAX_TIMESTAMP_SKEW_DAYS",
        7 * 86_400_000,
        "days (fractions allowed): events with a timestamp further from the server clock"
        " are left out",
        parse=days_as_ms,
        shown_default="`7`",
    )
    publish_timeout_s: float = setting(
        "INGEST_PUBLISH_TIMEOUT_S", 10.0, "wait this long for the Kafka ack, then answer 503"
    )
    max_inflight_batches: int = setting(
        "INGEST_MAX_INFLIGHT_BATCHES",
        200,
        "batches waiting for a Kafka ack at once; beyond it 503 `overloaded`",
    )
    retry_after_s: int = setting(
        "INGEST_RETRY_AFTER_S", 5, "`Retry-After` sent with 503 `kafka_unavailable`"
    )
    trusted_proxy_hops: int = setting(
        "INGEST_TRUSTED_PROXY_HOPS",
        0,
        "proxies in front that append to `X-Forwarded-For` (1 behind the k8s ingress);"
        " 0 = peer address",
    )
    # Short on purpose: each POST waits for its ack, so a linger is paid by every
    # batch, and under load the producer groups batches anyway (one produce
    # request in flight per broker; what arrives meanwhile goes in the next).
    linger_ms: float = setting(
        "INGEST_LINGER_MS",
        1.0,
        "producer batching: wait this long to fill a batch (may be fractional)",
    )
    producer_batch_bytes: int = setting(
        "INGEST_PRODUCER_BATCH_BYTES", 1024 * 1024, "producer batching: largest batch in bytes"
    )
    # Also holds records whose client already got 503 and that are still retried.
    producer_buffer_bytes: int = setting(
        "INGEST_PRODUCER_BUFFER_BYTES",
        256 * 1024 * 1024,
        "memory for records Kafka has not acknowledged yet; when full, 503",
    )
    # lz4: the least CPU and latency for the gateway and the broker; zstd stores
    # recordings.raw in about half the disk (docs/ingest.md has the measurements).
    compression: str = setting(
        "INGEST_COMPRESSION",
        "lz4",
        "compression of `recordings.raw`: `lz4`, `zstd` (half the disk, more CPU; see"
        " docs/ingest.md), `gzip`, `snappy`, `none`",
    )
    compression_level: int = setting(
        "INGEST_COMPRESSION_LEVEL",
        -1,
        "compression level; -1 = the codec's default (lz4 fast, zstd 3), higher packs"
        " tighter and costs more",
    )
    cors_max_age_s: int = setting(
        "INGEST_CORS_MAX_AGE_S", 86_400, "how long browsers may cache a preflight answer"
    )
    # uvloop (libuv) cuts the event loop's and sockets' share of every request.
    event_loop: str = setting(
        "INGEST_EVENT_LOOP",
        "uvloop",
        "event loop: `uvloop` or `asyncio` (the standard library's, for debugging)",
    )
    # HTTPS served by ingest itself, for deployments without an ingress in front.
    tls_cert_file: str = setting(
        "INGEST_TLS_CERT_FILE",
        "",
        "PEM certificate (chain) to serve HTTPS with; reloaded when the file changes",
        shown_default="empty (plain HTTP)",
    )
    tls_key_file: str = setting(
        "INGEST_TLS_KEY_FILE",
        "",
        "PEM private key of `INGEST_TLS_CERT_FILE`; reloaded when the file changes",
        shown_default="empty",
    )
    tls_reload_s: float = setting(
        "INGEST_TLS_RELOAD_S",
        10.0,
        "how often the certificate and key files are checked for a change",
    )
    log_level: str = log_level_setting()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Sealing of recordings.raw values (RAW_* variables, docs/security.md).
    raw_encryption: RawEncryptionSettings = field(default_factory=RawEncryptionSettings)

    @classmethod
    def from_env(cls) -> IngestSettings:
        """``INGEST_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``; defaults for those unset."""
        return from_env(cls)

    def __post_init__(self) -> None:
        if self.compression not in ("lz4", "zstd", "gzip", "snappy", "none"):
            raise SettingError("INGEST_COMPRESSION must be one of lz4, zstd, gzip, snappy, none")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingError("INGEST_EVENT_LOOP must be uvloop or asyncio")
        if self.producer_buffer_bytes < self.kafka.max_message_bytes:
            raise SettingError("INGEST_PRODUCER_BUFFER_BYTES must hold one largest message")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingError("INGEST_TLS_CERT_FILE and INGEST_TLS_KEY_FILE go together")
        if self.tls_reload_s <= 0:
            raise SettingError("INGEST_TLS_RELOAD_S must be positive")
        if self.max_inflight_batches < 1:
            raise SettingError("INGEST_MAX_INFLIGHT_BATCHES must be at least 1")
