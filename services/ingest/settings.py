"""Ingest settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import SettingError, env_float, env_int, env_str
from services.shared.kafka import KafkaSettings
from services.shared.keyring import RawEncryptionSettings


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingest gateway reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8080
    sites_file: str = "config/sites.json"
    # Bytes on the wire (compressed or not) and after decompression: the second
    # one is what a gzip bomb would blow up, so it is enforced while inflating.
    max_body_bytes: int = 10 * 1024 * 1024
    max_decoded_bytes: int = 10 * 1024 * 1024
    max_events_per_batch: int = 5000
    max_timestamp_skew_ms: int = 7 * 86_400_000
    # How long a POST waits for the Kafka acknowledgement before answering 503.
    publish_timeout_s: float = 10.0
    # Batches waiting for a Kafka ack at once; past it new batches get 503.
    max_inflight_batches: int = 200
    # Retry-After (seconds) sent with 503.
    retry_after_s: int = 5
    # Proxies in front of ingest that append to X-Forwarded-For (0: use the peer address).
    trusted_proxy_hops: int = 0
    # Producer batching: wait this long to fill a batch; batch up to this many bytes.
    # Short on purpose: each POST waits for its ack, so a linger is paid by every
    # batch, and under load the producer groups batches anyway (one produce
    # request in flight per broker; what arrives meanwhile goes in the next).
    linger_ms: float = 1.0
    producer_batch_bytes: int = 1024 * 1024
    # Memory the producer may hold for records Kafka has not acknowledged yet (also
    # those whose client already got 503 and that are still retried); past it, 503.
    producer_buffer_bytes: int = 256 * 1024 * 1024
    # lz4: the least CPU and latency for the gateway and the broker; zstd stores
    # recordings.raw in about half the disk (docs/ingest.md has the measurements).
    compression: str = "lz4"
    # -1: the codec's default (lz4 fast, zstd 3); higher packs tighter and costs more.
    compression_level: int = -1
    cors_max_age_s: int = 86_400
    # uvloop (libuv) cuts the event loop's and sockets' share of every request;
    # "asyncio" is the standard library loop, for debugging.
    event_loop: str = "uvloop"
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Sealing of recordings.raw values (RAW_* variables, docs/security.md).
    raw_encryption: RawEncryptionSettings = field(default_factory=RawEncryptionSettings)

    @classmethod
    def from_env(cls) -> IngestSettings:
        """Read ``INGEST_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return cls(
            host=env_str("INGEST_HOST", cls.host),
            port=env_int("INGEST_PORT", cls.port),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            max_body_bytes=env_int("INGEST_MAX_BODY_BYTES", cls.max_body_bytes),
            max_decoded_bytes=env_int("INGEST_MAX_DECODED_BYTES", cls.max_decoded_bytes),
            max_events_per_batch=env_int("INGEST_MAX_EVENTS_PER_BATCH", cls.max_events_per_batch),
            max_timestamp_skew_ms=int(
                env_float("INGEST_MAX_TIMESTAMP_SKEW_DAYS", cls.max_timestamp_skew_ms / 86_400_000)
                * 86_400_000
            ),
            publish_timeout_s=env_float("INGEST_PUBLISH_TIMEOUT_S", cls.publish_timeout_s),
            max_inflight_batches=env_int("INGEST_MAX_INFLIGHT_BATCHES", cls.max_inflight_batches),
            retry_after_s=env_int("INGEST_RETRY_AFTER_S", cls.retry_after_s),
            trusted_proxy_hops=env_int("INGEST_TRUSTED_PROXY_HOPS", cls.trusted_proxy_hops),
            linger_ms=env_float("INGEST_LINGER_MS", cls.linger_ms),
            producer_batch_bytes=env_int("INGEST_PRODUCER_BATCH_BYTES", cls.producer_batch_bytes),
            producer_buffer_bytes=env_int(
                "INGEST_PRODUCER_BUFFER_BYTES", cls.producer_buffer_bytes
            ),
            compression=env_str("INGEST_COMPRESSION", cls.compression),
            compression_level=env_int("INGEST_COMPRESSION_LEVEL", cls.compression_level),
            cors_max_age_s=env_int("INGEST_CORS_MAX_AGE_S", cls.cors_max_age_s),
            event_loop=env_str("INGEST_EVENT_LOOP", cls.event_loop),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
            raw_encryption=RawEncryptionSettings.from_env(),
        )

    def __post_init__(self) -> None:
        if self.compression not in ("lz4", "zstd", "gzip", "snappy", "none"):
            raise SettingError("INGEST_COMPRESSION must be one of lz4, zstd, gzip, snappy, none")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingError("INGEST_EVENT_LOOP must be uvloop or asyncio")
        if self.producer_buffer_bytes < self.kafka.max_message_bytes:
            raise SettingError("INGEST_PRODUCER_BUFFER_BYTES must hold one largest message")
        if self.max_inflight_batches < 1:
            raise SettingError("INGEST_MAX_INFLIGHT_BATCHES must be at least 1")
