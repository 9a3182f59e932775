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

-- What the sink inserts: one row per Kafka message. The header fields come from
-- the sink (it reads only the envelope's header and the site's retention); body
-- is the masked envelope exactly as it was on recordings.masked. A Null table
-- stores nothing: the materialized views below split and summarise the body in
-- ClickHouse, which is several times faster than doing it in Python.
CREATE TABLE IF NOT EXISTS incoming_batches
(
    site_id         LowCardinality(String),
    session_id      String,
    window_id       String,
    visitor_id      String,
    seq             UInt32,
    received_at     DateTime64(3, 'UTC'),
    retention_days  UInt16,
    agent           String,
    consent_state   Int8,
    body            String
)
ENGINE = Null;

-- The body parsed once: raw_events = each event's JSON, parsed = the fields the
-- event rows and the session summary need (a missing field reads as 0, '' or NULL).
CREATE TABLE IF NOT EXISTS parsed_batches
(
    site_id         LowCardinality(String),
    session_id      String,
    window_id       String,
    visitor_id      String,
    seq             UInt32,
    received_at     DateTime64(3, 'UTC'),
    retention_days  UInt16,
    agent           String,
    consent_state   Int8,
    raw_events      Array(String),
    parsed          Array(Tuple(timestamp Float64, type Nullable(Int64), data Tuple(source Nullable(Int64), type Int64, x Float64, y Float64, href String, width Nullable(Float64), height Nullable(Float64), level String, plugin String, payload Tuple(level String))))
)
ENGINE = Null;

-- A body that is not valid JSON, or an event that is not a JSON object, fails the
-- whole insert with this marker; the sink then finds the message, sends it to
-- recordings.dlq and inserts the rest (services/sink/writer.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS parsed_batches_mv TO parsed_batches AS
SELECT
    site_id, session_id, window_id, visitor_id, seq, received_at, retention_days, agent, consent_state,
    JSONExtractArrayRaw(body, 'events') AS raw_events,
    JSONExtract(body, 'events', 'Array(Tuple(timestamp Float64, type Nullable(Int64), data Tuple(source Nullable(Int64), type Int64, x Float64, y Float64, href String, width Nullable(Float64), height Nullable(Float64), level String, plugin String, payload Tuple(level String))))') AS parsed
FROM incoming_batches
WHERE throwIf(NOT (isValidJSON(body) AND arrayAll(e -> startsWith(e, '{'), raw_events)), 'replaypipe: message is not a valid envelope') = 0;

-- One events row per array element; idx = place in the batch (0-based). ts is
-- clamped to [1970, 2100); type 255 = not an integer 0..255; source -1 = not an
-- IncrementalSnapshot (or no integer source).
CREATE MATERIALIZED VIEW IF NOT EXISTS events_mv TO events AS
SELECT
    site_id,
    session_id,
    window_id,
    visitor_id,
    seq,
    toUInt32(idx - 1) AS idx,
    fromUnixTimestamp64Milli(toInt64(least(greatest(p.timestamp, 0.), 4102444800000.)), 'UTC') AS ts,
    received_at,
    toUInt8(if(p.type BETWEEN 0 AND 255, p.type, 255)) AS type,
    toInt16(if(p.type = 3 AND p.data.source BETWEEN 0 AND 32766, p.data.source, -1)) AS source,
    data,
    toUInt32(length(data)) AS size,
    retention_days
FROM parsed_batches
ARRAY JOIN raw_events AS data, arrayEnumerate(raw_events) AS idx, parsed AS p;
