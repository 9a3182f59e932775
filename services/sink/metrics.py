"""Prometheus metrics of the sink (names listed in deploy/metrics.txt)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS = Counter("replaypipe_sink_rows", "Event rows inserted into ClickHouse")
INSERTS = Counter("replaypipe_sink_inserts", "Insert statements acknowledged by ClickHouse")
INSERT_SECONDS = Histogram(
    "replaypipe_sink_insert_seconds",
    "Time of one acknowledged insert",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INSERT_FAILURES = Counter("replaypipe_sink_insert_failures", "Inserts ClickHouse refused or lost")
INSERT_RETRIES = Counter("replaypipe_sink_insert_retries", "Insert attempts after a failure")
INSERT_REFUSALS = Counter(
    "replaypipe_sink_insert_refusals",
    "Inserts ClickHouse refused because of their data (then split), by reason",
    ["reason"],
)
DLQ = Counter("replaypipe_sink_dlq", "Messages sent to recordings.dlq, by reason", ["reason"])
CONSUMER_LAG = Gauge(
    "replaypipe_sink_consumer_lag", "Messages behind on recordings.masked", ["partition"]
)
PAUSED = Gauge("replaypipe_sink_paused", "1 while consumption is paused (ClickHouse unavailable)")
BUFFERED_ROWS = Gauge("replaypipe_sink_buffered_rows", "Rows waiting for the next insert")
READ_REQUESTS = Counter(
    "replaypipe_sink_read_requests",
    "Read API requests, by endpoint and status",
    ["endpoint", "status"],
)
