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


def split_session_key(key: bytes | str) -> tuple[str, str]:
    """Inverse of :func:`session_key`; site ids never contain ``:``."""
    text = key.decode() if isinstance(key, bytes) else key
    site_id, _, session_id = text.partition(KEY_SEPARATOR)
    return site_id, session_id
