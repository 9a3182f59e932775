-- Session summaries, kept up to date from the events.
--
-- session_batches_mv computes, from each parsed batch (one Kafka message: one
-- window's batch `seq`), one summary row into session_batches, a Null table:
-- nothing is stored there, it only feeds sessions_mv, which folds the rows into
-- `sessions` (AggregatingMergeTree, one row per session after merges).
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

-- What one batch adds to its session (definitions in docs/sink.md). Events are
-- ordered by (time, place in batch) wherever order matters: the entry URL is
-- the first page load, the viewport the last size seen, and a rage click is
-- >= 3 clicks within 1000 ms and 30 px of the burst's first click (greedy: a
-- click counts towards one burst at most). Each nesting level computes named
-- arrays once, so ClickHouse analyses the query quickly on every insert.
CREATE MATERIALIZED VIEW IF NOT EXISTS session_batches_mv TO session_batches AS
SELECT
    site_id,
    session_id,
    window_id,
    seq,
    visitor_id,
    retention_days,
    fromUnixTimestamp64Milli(arrayMin(times), 'UTC') AS first_ts,
    fromUnixTimestamp64Milli(arrayMax(times), 'UTC') AS last_ts,
    length(times) AS event_count,
    byte_count,
    length(page_loads) AS page_views,
    length(click_list) AS clicks,
    if(length(click_list) < 3, 0, arrayFold((acc, i) -> if(i >= acc.2 AND burst_lengths[i] >= 3, (acc.1 + 1, i + burst_lengths[i]), acc), range(1, length(click_list) + 1), (toUInt64(0), toUInt64(1))).1) AS rage_clicks,
    inputs,
    console_errors,
    arraySort(arrayDistinct(arrayMap(x -> x.1, page_loads))) AS page_urls,
    page_loads[1].1 AS entry_url,
    if(empty(page_loads), toDateTime64('2100-01-01 00:00:00', 3, 'UTC'), fromUnixTimestamp64Milli(page_loads[1].2.1, 'UTC')) AS entry_url_ts,
    active_secs,
    toUInt16(least(greatest(assumeNotNull(viewports[1].1), 0.), 65535.)) AS viewport_w,
    toUInt16(least(greatest(assumeNotNull(viewports[1].2), 0.), 65535.)) AS viewport_h,
    if(empty(viewports), toDateTime64(0, 3, 'UTC'), fromUnixTimestamp64Milli(viewports[1].3.1, 'UTC')) AS viewport_ts,
    agent,
    consent_state
FROM
(
    SELECT
        *,
        -- burst_lengths[i]: clicks from i on within 1000 ms and 30 px of click i
        if(length(click_list) < 3, [], arrayMap(i -> toUInt64(if((arrayFirstIndex(j -> j > i AND (click_list[j].1.1 - click_list[i].1.1 > 1000 OR pow(click_list[j].2 - click_list[i].2, 2) + pow(click_list[j].3 - click_list[i].3, 2) > 900), range(1, length(click_list) + 1)) AS end) = 0, length(click_list) + 1, end) - i), range(1, length(click_list) + 1))) AS burst_lengths
    FROM
    (
        SELECT
            *,
            -- (url, (ms, idx), type) of every Meta event with an href, in time order
            arraySort(x -> x.2, arrayFilter(x -> x.1 != '' AND x.3 = 4, arrayZip(arrayMap(h -> leftUTF8(h, 2048), hrefs), order_keys, types))) AS page_loads,
            -- (width, height, (ms, idx), ...) of Meta and ViewportResize events, latest first
            arrayReverseSort(x -> x.3, arrayFilter(x -> isNotNull(x.1) AND isNotNull(x.2) AND (x.4 = 4 OR (x.4 = 3 AND x.5 = 4)), arrayZip(widths, heights, order_keys, types, sources))) AS viewports,
            -- ((ms, idx), x, y) of every click (MouseInteraction type 2), in time order
            arraySort(c -> c.1, arrayFilter((c, ty, s, it) -> ty = 3 AND s = 2 AND it = 2, arrayZip(order_keys, xs, ys), types, sources, interactions)) AS click_list,
            arrayCount((ty, s) -> ty = 3 AND s = 5, types, sources) AS inputs,
            arrayCount((ty, s, lv, pl, plv) -> (ty = 3 AND s = 11 AND lv = 'error') OR (ty = 6 AND pl = 'rrweb/console@1' AND plv = 'error'), types, sources, levels, plugins, plugin_levels) AS console_errors,
            -- seconds with a user action: mouse move/click, scroll, input, touch, drag, selection
            arraySort(arrayDistinct(arrayMap(t -> toUInt32(intDiv(t, 1000)), arrayFilter((t, ty, s) -> ty = 3 AND s IN (1, 2, 3, 5, 6, 12, 14), times, types, sources)))) AS active_secs
        FROM
        (
            SELECT
                *,
                arrayMap(t -> toInt64(least(greatest(t, 0.), 4102444800000.)), parsed.timestamp) AS times,
                arrayMap((t, i) -> (t, i), times, arrayEnumerate(times)) AS order_keys,
                arrayMap(t -> ifNull(t, -1), parsed.type) AS types,
                arrayMap(s -> ifNull(s, -1), parsed.data.source) AS sources,
                parsed.data.type AS interactions,
                parsed.data.x AS xs,
                parsed.data.y AS ys,
                parsed.data.href AS hrefs,
                parsed.data.width AS widths,
                parsed.data.height AS heights,
                parsed.data.level AS levels,
                parsed.data.plugin AS plugins,
                parsed.data.payload.level AS plugin_levels,
                arraySum(arrayMap(e -> length(e), raw_events)) AS byte_count
            FROM parsed_batches
            WHERE notEmpty(parsed)
        )
    )
);

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
