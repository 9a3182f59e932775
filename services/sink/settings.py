"""Sink settings, from environment variables (defaults documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import env_float, env_int, env_str
from services.shared.kafka import KafkaSettings


@dataclass(frozen=True)
class SinkSettings:
    """Everything the sink reads from the environment."""

    host: str = "0.0.0.0"
    port: int = 8082
    clickhouse_url: str = "chdb://var/clickhouse"
    group_id: str = "replaypipe-sink"
    sites_file: str = "config/sites.json"
    admin_token: str = ""
    batch_max_rows: int = 100_000
    batch_max_bytes: int = 32 * 1024 * 1024
    batch_max_seconds: float = 1.0
    # Adaptive start (docs/sink.md, "When a batch is inserted"): with no insert in
    # flight a batch of at least this many events may go before it is full ...
    batch_min_rows: int = 5_000
    # ... once this long, scaled by how far the batch is from full, has passed since
    # the previous insert started: about one insert per second beyond what the
    # maximum batch size forces (ClickHouse's guidance is ~1 insert/s per table).
    min_insert_interval_s: float = 1.0
    # Read side (docs/sink.md, "Read API"): connections of the read API's lane;
    # analyst SQL runs on its own connections, on this DSN when set (a
    # read-only ClickHouse user on a server), with these limits per query.
    read_connections: int = 2
    sql_clickhouse_url: str = ""
    sql_connections: int = 1
    sql_max_rows: int = 10_000
    sql_max_result_bytes: int = 16 * 1024 * 1024
    sql_max_seconds: float = 30.0
    sql_max_memory_bytes: int = 1_000_000_000
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def from_env(cls) -> SinkSettings:
        """Read ``SINK_*``, ``CLICKHOUSE_URL``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return cls(
            host=env_str("SINK_HOST", cls.host),
            port=env_int("SINK_PORT", cls.port),
            clickhouse_url=env_str("CLICKHOUSE_URL", cls.clickhouse_url),
            group_id=env_str("SINK_GROUP_ID", cls.group_id),
            sites_file=env_str("SITES_FILE", cls.sites_file),
            admin_token=env_str("SINK_ADMIN_TOKEN", cls.admin_token),
            batch_max_rows=env_int("SINK_BATCH_MAX_ROWS", cls.batch_max_rows),
            batch_max_bytes=env_int("SINK_BATCH_MAX_BYTES", cls.batch_max_bytes),
            batch_max_seconds=env_float("SINK_BATCH_MAX_SECONDS", cls.batch_max_seconds),
            batch_min_rows=env_int("SINK_BATCH_MIN_ROWS", cls.batch_min_rows),
            min_insert_interval_s=env_float(
                "SINK_MIN_INSERT_INTERVAL_S", cls.min_insert_interval_s
            ),
            read_connections=env_int("SINK_READ_CONNECTIONS", cls.read_connections),
            sql_clickhouse_url=env_str("SINK_SQL_CLICKHOUSE_URL", cls.sql_clickhouse_url),
            sql_connections=env_int("SINK_SQL_CONNECTIONS", cls.sql_connections),
            sql_max_rows=env_int("SINK_SQL_MAX_ROWS", cls.sql_max_rows),
            sql_max_result_bytes=env_int("SINK_SQL_MAX_RESULT_BYTES", cls.sql_max_result_bytes),
            sql_max_seconds=env_float("SINK_SQL_MAX_SECONDS", cls.sql_max_seconds),
            sql_max_memory_bytes=env_int("SINK_SQL_MAX_MEMORY_BYTES", cls.sql_max_memory_bytes),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            kafka=KafkaSettings.from_env(),
        )
