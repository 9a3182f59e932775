-- Rage clicks in one pass (issue 12): session_batches_mv as in 0002_sessions.sql but
-- for rage_clicks. 0002 compared every click of a batch with every other one
-- (burst_lengths: for each click, arrayFirstIndex over all clicks): a batch of
-- 4,999 clicks held ~25M intermediate values, ~1.9 GiB for one insert, and a
-- per-query memory limit failed the insert. Here a single arrayFold walks the
-- clicks in time order with a small state (docs/sink.md, "sessions"), so the
-- summary's cost is linear in the batch, and bounded: at most the first 5,000
-- clicks of a message are looked at. Same definition: >= 3 clicks within 1000 ms
-- and 30 px of the burst's first click, greedily in time order.
--
-- MODIFY QUERY swaps the view's query in place: no insert runs without it.
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
    -- One pass over the clicks in time order (linear in the batch): acc = (bursts,
    -- clicks in the open burst (at most 3 counted), its first click, its second).
    -- A click near the first (1000 ms, 30 px) joins the burst, and the third joining
    -- counts it; otherwise a burst of 3+ is over and the click starts the next; a
    -- start that stays below 3 is retried from its second click, as the greedy
    -- scan does. Each step of arrayFold has a fixed cost (~0.1 ms here), so only
    -- a batch's first 5,000 clicks (ingest's default event limit per batch) are
    -- looked at: a batch's summary costs at most ~0.7 s and ~90 MiB.
    arrayFold((acc, c) -> multiIf(
        acc.2 > 0 AND c.1.1 - acc.3.1.1 <= 1000 AND pow(c.2 - acc.3.2, 2) + pow(c.3 - acc.3.3, 2) <= 900,
            (acc.1 + (acc.2 = 2), toUInt8(least(acc.2 + 1, 3)), acc.3, if(acc.2 = 1, c, acc.4)),
        acc.2 = 2 AND c.1.1 - acc.4.1.1 <= 1000 AND pow(c.2 - acc.4.2, 2) + pow(c.3 - acc.4.3, 2) <= 900,
            (acc.1, toUInt8(2), acc.4, c),
        (acc.1, toUInt8(1), c, c)),
        arraySlice(click_list, 1, 5000), (toUInt64(0), toUInt8(0), click_list[1], click_list[1])).1 AS rage_clicks,
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
);
