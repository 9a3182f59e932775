-- Session summaries, kept up to date from the events.
--
-- The sink writes one summary row per batch (one Kafka message: one window's
-- batch `seq`) into session_batches, a Null table: nothing is stored there, it
-- only feeds the materialized view, which folds the rows into `sessions`
-- (AggregatingMergeTree, one row per session after merges).
--
-- Every aggregate is idempotent: min, max, groupUniqArray, argMin/argMax, and
-- per-batch counters held in a maxMap keyed by hash(window_id, seq). A batch
-- redelivered after a crash (even inside a differently cut insert, so no
-- deduplication token can catch it) changes no session figure.
CREATE TABLE IF NOT EXISTS session_batches
(
    site_id          LowCardinality(String),
    session_id       String,
    window_id        String,
    seq              UInt32,
    visitor_id       String,
    retention_days   UInt16,
    first_ts         DateTime64(3, 'UTC'),
    last_ts          DateTime64(3, 'UTC'),
    event_count      UInt64,
    byte_count       UInt64,
    page_views       UInt64,
    clicks           UInt64,
    rage_clicks      UInt64,
    inputs           UInt64,
    console_errors   UInt64,
    page_urls        Array(String),
    entry_url        String,
    entry_url_ts     DateTime64(3, 'UTC'),
    active_secs      Array(UInt32),
    viewport_w       UInt16,
    viewport_h       UInt16,
    viewport_ts      DateTime64(3, 'UTC'),
    agent            String,
    consent_state    Int8
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS sessions
(
    site_id         LowCardinality(String),
    session_id      String,
    visitor_id      SimpleAggregateFunction(max, String),
    retention_days  SimpleAggregateFunction(max, UInt16),
    started_at      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ended_at        SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    batch_counts    SimpleAggregateFunction(maxMap, Tuple(Array(UInt64), Array(UInt64), Array(UInt64), Array(UInt64), Array(UInt64), Array(UInt64), Array(UInt64), Array(UInt64))),
    urls            SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    active_seconds  SimpleAggregateFunction(groupUniqArrayArray, Array(UInt32)),
    first_url       AggregateFunction(argMin, String, DateTime64(3, 'UTC')),
    viewport        AggregateFunction(argMax, Tuple(UInt16, UInt16), DateTime64(3, 'UTC')),
    user_agent      SimpleAggregateFunction(max, String),
    consent         AggregateFunction(argMax, Int8, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (site_id, session_id)
TTL toDateTime(ended_at) + toIntervalDay(retention_days);

-- batch_counts = (hash(window_id, seq), events, bytes, page views, clicks,
-- rage clicks, inputs, console errors): maxMap keeps one value per batch.
CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT
    site_id,
    session_id,
    max(b.visitor_id) AS visitor_id,
    max(b.retention_days) AS retention_days,
    min(b.first_ts) AS started_at,
    max(b.last_ts) AS ended_at,
    maxMap(tuple([cityHash64(b.window_id, b.seq)], [b.event_count], [b.byte_count], [b.page_views], [b.clicks], [b.rage_clicks], [b.inputs], [b.console_errors])) AS batch_counts,
    groupUniqArrayArray(b.page_urls) AS urls,
    groupUniqArrayArray(b.active_secs) AS active_seconds,
    argMinState(b.entry_url, b.entry_url_ts) AS first_url,
    argMaxState(tuple(b.viewport_w, b.viewport_h), b.viewport_ts) AS viewport,
    max(b.agent) AS user_agent,
    argMaxState(b.consent_state, b.last_ts) AS consent
FROM session_batches AS b
GROUP BY site_id, session_id;

-- What analysts and the read API query: one finished row per session.
-- consent: 1 granted, 0 refused, -1 never signalled.
CREATE VIEW IF NOT EXISTS session_summaries AS
SELECT
    site_id,
    session_id,
    max(s.visitor_id) AS visitor_id,
    min(s.started_at) AS start_time,
    max(s.ended_at) AS end_time,
    dateDiff('millisecond', start_time, end_time) / 1000 AS duration_s,
    length(groupUniqArrayArray(s.active_seconds)) AS active_s,
    maxMap(s.batch_counts) AS counts,
    arraySum(counts.2) AS event_count,
    arraySum(counts.3) AS bytes,
    arraySum(counts.4) AS page_views,
    arraySum(counts.5) AS clicks,
    arraySum(counts.6) AS rage_clicks,
    arraySum(counts.7) AS inputs,
    arraySum(counts.8) AS console_errors,
    arraySort(groupUniqArrayArray(s.urls)) AS page_urls,
    argMinMerge(s.first_url) AS first_url,
    argMaxMerge(s.viewport) AS viewport,
    max(s.user_agent) AS user_agent,
    argMaxMerge(s.consent) AS consent,
    max(s.retention_days) AS retention_days
FROM sessions AS s
GROUP BY site_id, session_id;
