-- The session summary's view, made cheap (issue 16 item 3; docs/benchmarks.md, "The
-- session summary's view, made cheap (summv)"). ClickHouse analyses and plans a
-- materialized view's query on every insert, before it sees a row, and that cost grows
-- with the query's expression nodes and nesting levels: session_batches_mv as 0003 left
-- it cost 12-18 ms per insert whatever the insert held. Same summary, fewer nodes:
--
-- - parsed_batches gains `times` (each event's time in ms, clamped to 1970..2100 as
--   events.ts is): computed once where the body is parsed, not in a level of its own
--   in the summary's query.
-- - Two levels instead of three; each named array is computed once and only read after.
-- - Events are ordered by (time, place in batch) as before, but by sorting plain
--   (ms, idx, ...) tuples (idx is unique, so nothing after it is compared) instead of
--   sorting zips with a key lambda; the viewport is picked in the inner level, once.
-- - The rage-click fold keeps its definition (0003) with a smaller state: it starts from a
--   sentinel click far in the past (no click is within 1000 ms of it), so no "has a
--   burst begun" test, and distances are L2SquaredDistance of (x, y) points (the same
--   double arithmetic as pow(dx, 2) + pow(dy, 2)).
--
-- Each statement leaves a working schema (a column no view reads yet, then a view
-- that fills it, then the summary that reads it), and MODIFY QUERY swaps a view's
-- query in place: no insert runs without one, and nothing stored changes.
ALTER TABLE parsed_batches ADD COLUMN IF NOT EXISTS times Array(Int64);

ALTER TABLE parsed_batches_mv MODIFY QUERY
SELECT
    site_id, session_id, window_id, visitor_id, seq, received_at, retention_days, agent, consent_state,
    JSONExtractArrayRaw(body, 'events') AS raw_events,
    JSONExtract(body, 'events', 'Array(Tuple(timestamp Float64, type Nullable(Int64), data Tuple(source Nullable(Int64), type Int64, x Float64, y Float64, href String, width Nullable(Float64), height Nullable(Float64), level String, plugin String, payload Tuple(level String))))') AS parsed,
    arrayMap(t -> toInt64(least(greatest(t, 0.), 4102444800000.)), parsed.timestamp) AS times
FROM incoming_batches
WHERE throwIf(NOT (isValidJSON(body) AND arrayAll(e -> startsWith(e, '{'), raw_events)), 'replaypipe: message is not a valid envelope') = 0;

ALTER TABLE session_batches_mv MODIFY QUERY
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
    -- acc = (bursts, clicks in the open burst, its first click, its second): as in 0003.
    arrayFold((acc, c) -> multiIf(
        c.1 - acc.3.1 <= 1000 AND L2SquaredDistance(c.3, acc.3.3) <= 900,
            (acc.1 + (acc.2 = 2), acc.2 + 1, acc.3, if(acc.2 = 1, c, acc.4)),
        acc.2 = 2 AND c.1 - acc.4.1 <= 1000 AND L2SquaredDistance(c.3, acc.4.3) <= 900,
            (acc.1, acc.2, acc.4, c),
        (acc.1, toUInt64(1), c, c)),
        arraySlice(click_list, 1, 5000),
        (toUInt64(0), toUInt64(0), (toInt64(-1000000), toUInt32(0), (0., 0.)), (toInt64(-1000000), toUInt32(0), (0., 0.)))).1 AS rage_clicks,
    inputs,
    console_errors,
    arraySort(arrayDistinct(arrayMap(p -> leftUTF8(p.3, 2048), page_loads))) AS page_urls,
    leftUTF8(page_loads[1].3, 2048) AS entry_url,
    if(empty(page_loads), toDateTime64('2100-01-01 00:00:00', 3, 'UTC'), fromUnixTimestamp64Milli(page_loads[1].1, 'UTC')) AS entry_url_ts,
    active_secs,
    toUInt16(least(greatest(assumeNotNull(viewport.3), 0.), 65535.)) AS viewport_w,
    toUInt16(least(greatest(assumeNotNull(viewport.4), 0.), 65535.)) AS viewport_h,
    -- idx counts from 1: 0 is the default tuple [1] gives when no event has both sizes.
    if(viewport.2 = 0, toDateTime64(0, 3, 'UTC'), fromUnixTimestamp64Milli(viewport.1, 'UTC')) AS viewport_ts,
    agent,
    consent_state
FROM
(
    SELECT
        site_id, session_id, window_id, seq, visitor_id, retention_days, agent, consent_state, times,
        length(arrayStringConcat(raw_events)) AS byte_count,
        -- (ms, idx, url) of every Meta event with an href, in time order
        arraySort(arrayFilter((p, ty) -> p.3 != '' AND ty = 4, arrayZip(times, arrayEnumerate(times), parsed.data.href), parsed.type)) AS page_loads,
        -- (ms, idx, width, height) of the latest Meta or ViewportResize event with both sizes
        arrayReverseSort(arrayFilter((v, ty, s) -> isNotNull(v.3) AND isNotNull(v.4) AND (ty = 4 OR (ty = 3 AND s = 4)), arrayZip(times, arrayEnumerate(times), parsed.data.width, parsed.data.height), parsed.type, parsed.data.source))[1] AS viewport,
        -- (ms, idx, (x, y)) of every click (MouseInteraction type 2), in time order
        arraySort(arrayFilter((c, ty, s, it) -> ty = 3 AND s = 2 AND it = 2, arrayZip(times, arrayEnumerate(times), arrayZip(parsed.data.x, parsed.data.y)), parsed.type, parsed.data.source, parsed.data.type)) AS click_list,
        arrayCount((ty, s) -> ty = 3 AND s = 5, parsed.type, parsed.data.source) AS inputs,
        arrayCount((ty, s, lv, pl, plv) -> (ty = 3 AND s = 11 AND lv = 'error') OR (ty = 6 AND pl = 'rrweb/console@1' AND plv = 'error'), parsed.type, parsed.data.source, parsed.data.level, parsed.data.plugin, parsed.data.payload.level) AS console_errors,
        -- seconds with a user action: mouse move/click, scroll, input, touch, drag, selection
        arraySort(arrayDistinct(arrayMap(t -> toUInt32(intDiv(t, 1000)), arrayFilter((t, ty, s) -> ty = 3 AND s IN (1, 2, 3, 5, 6, 12, 14), times, parsed.type, parsed.data.source)))) AS active_secs
    FROM parsed_batches
    WHERE notEmpty(parsed)
);
