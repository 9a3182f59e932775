"""Sink settings: each one declared once, with its variable, default and meaning."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.shared.env import from_env, log_level_setting, setting, sites_file_setting
from services.shared.kafka import KafkaSettings
from services.sink.connection import ClickHouseConnection


@dataclass(frozen=True)
class SinkSettings:
    """Everything the sink reads from the environment."""

    host: str = setting("SINK_HOST", "0.0.0.0", "read API and ops endpoints' listen address")
    port: int = setting("SINK_PORT", 8082, "read API and ops endpoints' port")
    clickhouse_url: str = setting(
        "CLICKHOUSE_URL",
        "chdb://var/clickhouse",
        "`chdb://PATH` = embedded engine (relative or `chdb:///abs/path`);"
        " `http(s)://host:8123/db` = ClickHouse server (`https://host:8443/db`: TLS, verified)",
    )
    clickhouse_user: str = setting(
        "CLICKHOUSE_USER",
        "",
        "ClickHouse server user of the writer and read API",
        shown_default="empty (from the URL, else `default`)",
    )
    clickhouse_password_file: str = setting(
        "CLICKHOUSE_PASSWORD_FILE",
        "",
        "file holding that user's password",
        shown_default="empty (no password)",
    )
    clickhouse_ca_file: str = setting(
        "CLICKHOUSE_CA_FILE",
        "",
        "PEM CA bundle the server's certificate is checked against (`https` URLs)",
        shown_default="empty (system trust store)",
    )
    group_id: str = setting("SINK_GROUP_ID", "replaypipe-sink", "Kafka consumer group")
    sites_file: str = sites_file_setting()
    admin_token: str = setting(
        "SINK_ADMIN_TOKEN",
        "",
        "bearer token for admin endpoints (SQL, any site)",
        shown_default="empty (disabled)",
    )
    batch_max_rows: int = setting(
        "SINK_BATCH_MAX_ROWS",
        100_000,
        "a batch is inserted at once when it has this many events (estimated)",
    )
    batch_max_bytes: int = setting(
        "SINK_BATCH_MAX_BYTES",
        32 * 1024 * 1024,
        "a batch is inserted at once when it holds this many bytes",
    )
    batch_max_seconds: float = setting(
        "SINK_BATCH_MAX_SECONDS",
        1.0,
        "a batch is inserted at once when its first message is this old; one insert in"
        " flight, the next batch (this size plus at most one poll) is consumed meanwhile",
    )
    # Adaptive start (docs/sink.md, "When a batch is inserted"): with no insert in
    # flight a batch of at least this many events may go before it is full ...
    batch_min_rows: int = setting(
        "SINK_BATCH_MIN_ROWS",
        5_000,
        "adaptive start: with no insert in flight, a batch of at least this many events"
        ' may go before it is full (docs/sink.md, "When a batch is inserted")',
    )
    # ... once this long, scaled by how far the batch is from full, has passed since
    # the previous insert started: about one insert per second beyond what the
    # maximum batch size forces (ClickHouse's guidance is ~1 insert/s per table).
    min_insert_interval_s: float = setting(
        "SINK_MIN_INSERT_INTERVAL_S",
        1.0,
        "adaptive start: such a batch goes once this interval times (1 - its fill) has"
        " passed since the previous insert started (about 1 insert/s beyond what the"
        " maximum size forces)",
    )
    # aiokafka's defaults: a fetch returns as soon as one message is there. Waiting
    # for more (e.g. 1 MiB or 100 ms) halves the writer's Python CPU below
    # saturation, but every ms of it is a ms later in ClickHouse, and it does not
    # change what a second sink costs (its inserts do: docs/benchmarks.md, soak).
    fetch_min_bytes: int = setting(
        "SINK_FETCH_MIN_BYTES",
        1,
        "a fetch of `recordings.masked` returns once it has this many bytes,"
        " or after `SINK_FETCH_MAX_WAIT_MS`",
    )
    fetch_max_wait_ms: int = setting(
        "SINK_FETCH_MAX_WAIT_MS",
        500,
        "longest a fetch waits for `SINK_FETCH_MIN_BYTES` (adds up to this to freshness"
        " when that is more than 1)",
    )
    # Read side (docs/sink.md, "Read API"): the read API's lane of connections;
    # analyst SQL runs on its own connections, on its own DSN when set (a
    # read-only ClickHouse user on a server), with these limits per query.
    read_connections: int = setting(
        "SINK_READ_CONNECTIONS",
        2,
        "connections of the read API's lane (reads never wait for inserts)",
    )
    sql_clickhouse_url: str = setting(
        "SINK_SQL_CLICKHOUSE_URL",
        "",
        "where analyst SQL runs (e.g. a read-only user on a server); empty = `CLICKHOUSE_URL`",
        shown_default="empty (`CLICKHOUSE_URL`)",
    )
    sql_clickhouse_user: str = setting(
        "SINK_SQL_CLICKHOUSE_USER",
        "",
        "ClickHouse user of analyst SQL (a read-only one)",
        shown_default="empty (`CLICKHOUSE_USER`)",
    )
    sql_clickhouse_password_file: str = setting(
        "SINK_SQL_CLICKHOUSE_PASSWORD_FILE",
        "",
        "file holding the analyst SQL user's password",
        shown_default="empty (`CLICKHOUSE_PASSWORD_FILE` unless `SINK_SQL_CLICKHOUSE_USER` is set)",
    )
    sql_connections: int = setting(
        "SINK_SQL_CONNECTIONS", 1, "analyst queries at once; one more is answered 429 `sql_busy`"
    )
    sql_max_rows: int = setting(
        "SINK_SQL_MAX_ROWS", 10_000, "analyst SQL result cut at this many rows"
    )
    sql_max_result_bytes: int = setting(
        "SINK_SQL_MAX_RESULT_BYTES",
        16 * 1024 * 1024,
        "analyst SQL result cut at this many JSON bytes",
    )
    sql_max_seconds: float = setting(
        "SINK_SQL_MAX_SECONDS", 30.0, "an analyst query is stopped after this many seconds"
    )
    sql_max_memory_bytes: int = setting(
        "SINK_SQL_MAX_MEMORY_BYTES",
        1_000_000_000,
        "an analyst query is stopped past this engine memory",
    )
    log_level: str = log_level_setting()
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def from_env(cls) -> SinkSettings:
        """``SINK_*``, ``CLICKHOUSE_*``, ``SITES_FILE``, ``KAFKA_*`` and ``LOG_LEVEL``."""
        return from_env(cls)

    def clickhouse(self) -> ClickHouseConnection:
        """The writer's and the read API's connection (``CLICKHOUSE_*``)."""
        return ClickHouseConnection(
            self.clickhouse_url,
            self.clickhouse_user,
            self.clickhouse_password_file,
            self.clickhouse_ca_file,
        )

    def analyst_clickhouse(self) -> ClickHouseConnection:
        """Analyst SQL's connection: ``SINK_SQL_CLICKHOUSE_*`` where set, else ``CLICKHOUSE_*``."""
        if self.sql_clickhouse_user:
            # A user of its own has its own password (or none), never the writer's.
            user, password_file = self.sql_clickhouse_user, self.sql_clickhouse_password_file
            password_variable = "SINK_SQL_CLICKHOUSE_PASSWORD_FILE"
        elif self.sql_clickhouse_password_file:
            user, password_file = self.clickhouse_user, self.sql_clickhouse_password_file
            password_variable = "SINK_SQL_CLICKHOUSE_PASSWORD_FILE"
        else:
            user, password_file = self.clickhouse_user, self.clickhouse_password_file
            password_variable = "CLICKHOUSE_PASSWORD_FILE"
        return ClickHouseConnection(
            self.sql_clickhouse_url or self.clickhouse_url,
            user,
            password_file,
            self.clickhouse_ca_file,
            url_variable="SINK_SQL_CLICKHOUSE_URL" if self.sql_clickhouse_url else "CLICKHOUSE_URL",
            password_variable=password_variable,
        )
