-- Codecs for the columns around the JSON (issue 16 item 4; figures in docs/benchmarks.md,
-- "Storage on real pages", and the choice in docs/sink.md). Measured on a real Chromium
-- recording, heavy product-listing pages and generated sessions, these columns took
-- 5-9 bytes per event next to the JSON's 8-165: mostly ts (8 bytes of milliseconds,
-- LZ4: ~4 bytes/event) and the per-row ids. Now ts is stored as the change of its
-- change (DoubleDelta: events of a session are ordered by time, so a few bits each),
-- received_at as its change (constant within a batch), the ids with ZSTD(3) (LZ4 kept 2-3x
-- more of the repeated ids, ZSTD(1) more still) and the small integers with ZSTD(1).
--
-- data stays ZSTD(3): ZSTD(6)/(9) save 8-31% more on the JSON but compress ~3x slower,
-- at insert and at every merge, and the sink is bound by its insert (docs/sink.md).
-- The ORDER BY stays: ordering by (window, seq, idx) instead of time stored no less
-- (and made ts cost 2x more for multi-window sessions) and would need a copy of the table.
--
-- A codec change is metadata only: no mutation runs, parts written from now on (inserts
-- and merges) use the new codecs, older parts keep theirs until merged, and every read
-- works on both. So this runs in well under a second on a store of any size.
ALTER TABLE events MODIFY COLUMN session_id String CODEC(ZSTD(3));
ALTER TABLE events MODIFY COLUMN window_id String CODEC(ZSTD(3));
ALTER TABLE events MODIFY COLUMN visitor_id String CODEC(ZSTD(3));
ALTER TABLE events MODIFY COLUMN seq UInt32 CODEC(Delta, ZSTD(1));
ALTER TABLE events MODIFY COLUMN idx UInt32 CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1));
ALTER TABLE events MODIFY COLUMN received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1));
ALTER TABLE events MODIFY COLUMN type UInt8 CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN source Int16 CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN size UInt32 CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN retention_days UInt16 CODEC(ZSTD(1));
