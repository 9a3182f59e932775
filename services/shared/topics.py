"""Kafka topic names and the message key, the same everywhere in the pipeline."""

from __future__ import annotations

RAW = "recordings.raw"
MASKED = "recordings.masked"
DLQ = "recordings.dlq"
SITES_CONFIG = "sites.config"

# One session stays on one partition, in order, from ingest to sink.
KEY_SEPARATOR = ":"


def session_key(site_id: str, session_id: str) -> bytes:
    """The Kafka message key of a session: ``b"<site_id>:<session_id>"``."""
    return f"{site_id}{KEY_SEPARATOR}{session_id}".encode()

