-- One row per rrweb event. (site_id, session_id, window_id, seq, idx) names an
-- event everywhere: seq is the browser's per-window batch counter and idx the
-- event's place in that batch, so a redelivered batch carries the same keys and
-- ReplacingMergeTree collapses it (read with FINAL; inserts also carry an
-- insert_deduplication_token so the common retry never even lands twice).
-- Ordered for "all events of one session in order"; the JSON is ZSTD-compressed.
-- retention_days is the site's setting when the row was written: the TTL
-- deletes each row after its own site's retention.
CREATE TABLE IF NOT EXISTS events
(
    site_id         LowCardinality(String),
    session_id      String,
    window_id       String,
    visitor_id      String,
    seq             UInt32,
    idx             UInt32,
    ts              DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    type            UInt8,
    source          Int16,
    data            String CODEC(ZSTD(3)),
    size            UInt32,
    retention_days  UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, session_id, ts, window_id, seq, idx)
TTL toDateTime(ts) + toIntervalDay(retention_days)
SETTINGS non_replicated_deduplication_window = 1000;
