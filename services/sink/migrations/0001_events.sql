-- One row per rrweb event. (site_id, session_id, window_id, seq, idx) names an
-- event everywhere, so a redelivered batch collapses into the same rows.
CREATE TABLE IF NOT EXISTS events
(
    site_id      LowCardinality(String),
    session_id   String,
    window_id    String,
    visitor_id   String,
    seq          UInt32,
    idx          UInt32,
    ts           DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    type         UInt8,
    source       Int16,
    data         String CODEC(ZSTD(3)),
    size         UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, session_id, ts, window_id, seq, idx)
SETTINGS non_replicated_deduplication_window = 1000
