-- One file per small part (issue 16 item 3; figures in docs/benchmarks.md, "One sink
-- insert, taken apart"). Every sink insert writes one new part into events and one into
-- sessions, and a Compact part is a directory of 13 files (data, marks, checksums,
-- columns, count, partition, min/max, primary index, TTL, codec, serialization ...).
-- Creating them was a third of an insert's fixed cost here, most of it in the kernel
-- allocating inodes. Packed storage writes the same files into one archive
-- (data.packed) inside the part's directory: 2 inodes per part instead of 14.
--
-- The threshold is the one at which a part stops being Compact (min_bytes_for_wide_part,
-- 10 MiB uncompressed): the parts inserts and early merges make are Packed, larger
-- merged parts keep one file per column, as before. The stored rows, FINAL,
-- deduplication, TTL, mutations and lightweight DELETE work the same on both kinds.
--
-- Metadata only: existing parts keep their storage until merged, every read works on
-- both. Packed storage is open source since ClickHouse 26.x (chdb 26.9 here); before
-- that the setting was documented as ClickHouse Cloud only (docs/sink.md: check a
-- server before migrating it), and a store that holds Packed parts cannot be read by
-- a server that lacks Packed storage (no downgrade).
ALTER TABLE events MODIFY SETTING min_bytes_for_full_part_storage = 10485760;
ALTER TABLE sessions MODIFY SETTING min_bytes_for_full_part_storage = 10485760;
