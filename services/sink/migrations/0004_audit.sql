-- The console's audit log: who logged in (or failed to), opened which replay,
-- exported, ran SQL, changed settings or tokens, erased what. Written by the
-- sink from the Kafka topic console.audit (services/sink/audit.py).
--
-- It never holds a recording's content or a secret: the console sends names
-- and ids only (services/console/audit.py). Its retention is its own (400 days,
-- change with ALTER TABLE audit_log MODIFY TTL ...), not a site's
-- retention_days, and erasure (store.erase) never touches it: the people it
-- records cannot remove it. session_id is the session a replay or erasure was
-- about ('' otherwise); it is part of the cluster variant's sharding key.
-- ReplacingMergeTree on event_id: a redelivered event collapses into one row.
CREATE TABLE IF NOT EXISTS audit_log
(
    event_id    UUID,
    at          DateTime64(3, 'UTC'),
    site_id     LowCardinality(String),
    session_id  String,
    actor       String,
    action      LowCardinality(String),
    target      String,
    outcome     LowCardinality(String),
    address     String,
    detail      String
)
ENGINE = ReplacingMergeTree
ORDER BY (site_id, at, event_id)
TTL toDateTime(at) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
