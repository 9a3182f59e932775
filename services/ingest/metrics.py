"""Prometheus metrics of the ingest gateway (names listed in deploy/metrics.txt)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "replaypipe_ingest_requests", "HTTP requests answered by ingest, by status code", ["status"]
)
ACCEPTED = REQUESTS.labels("202")  # the hot path: looked up once
REJECTIONS = Counter("replaypipe_ingest_rejections", "Batches refused, by reason code", ["reason"])
EVENTS = Counter("replaypipe_ingest_events", "rrweb events accepted and published")
BYTES = Counter("replaypipe_ingest_bytes", "Request body bytes accepted (as received)")
REQUEST_SECONDS = Histogram(
    "replaypipe_ingest_request_seconds",
    "Time to answer a batch POST, including the Kafka acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INFLIGHT = Gauge("replaypipe_ingest_inflight_batches", "Batches waiting for a Kafka ack")
PRODUCER_QUEUED = Gauge(
    "replaypipe_ingest_producer_queued_records",
    "Records in the Kafka producer not acknowledged yet (also those whose client got 503)",
)
PUBLISH_FAILURES = Counter(
    "replaypipe_ingest_publish_failures", "Batches Kafka did not acknowledge (client told to retry)"
)
SAMPLED_OUT = Counter(
    "replaypipe_ingest_sampled_out_batches",
    "Batches answered 202 sampled_out: the site's sample_rate left their session out",
)
DROPPED_EVENTS = Counter(
    "replaypipe_ingest_dropped_events",
    "Events left out of accepted batches as not plausible rrweb events, by reason",
    ["reason"],
)
