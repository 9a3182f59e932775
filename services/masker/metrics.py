"""Prometheus metrics of the masker (names listed in deploy/metrics.txt)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCHES = Counter("replaypipe_masker_batches", "Batches masked and published")
EVENTS = Counter("replaypipe_masker_events", "rrweb events masked and published")
MASKED = Counter("replaypipe_masker_masked", "Values masked, by rule", ["rule"])
DROPPED = Counter("replaypipe_masker_dropped_events", "Events not published, by reason", ["reason"])
STATE_BYTES = Histogram(
    "replaypipe_masker_state_bytes",
    "Stored per-session masking state size, after each batch that changed it",
    buckets=(64, 256, 1024, 4096, 16384, 65536, 262144, 1048576),
)
SESSIONS_IN_STATE = Gauge("replaypipe_masker_sessions_in_state", "Sessions held in masker state")
CONSUMER_LAG = Gauge(
    "replaypipe_masker_consumer_lag", "Messages behind on recordings.raw", ["partition"]
)
BATCH_SECONDS = Histogram(
    "replaypipe_masker_batch_seconds",
    "Time to mask one batch (pure rules only)",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
LAST_EVENT = Gauge(
    "replaypipe_masker_last_event_timestamp_seconds",
    "Receive time of the last batch masked for a site",
    ["site"],
)
DLQ = Counter(
    "replaypipe_masker_dlq",
    "Raw batches not published, a pointer sent to recordings.dlq instead, by reason",
    ["reason"],
)
AGENT_UP = Gauge(
    "replaypipe_masker_agent_up", "1 while the masking agent runs, 0 once it has stopped"
)
BATCH_RUNNING_SECONDS = Gauge(
    "replaypipe_masker_batch_running_seconds",
    "How long the batch being masked now has taken so far (0 between batches)",
)
PARTITION_STUCK = Gauge(
    "replaypipe_masker_partition_stuck",
    "1 while a recordings.raw partition has lag but its committed offset has not moved"
    " for MASKER_STUCK_AFTER_S",
    ["partition"],
)
