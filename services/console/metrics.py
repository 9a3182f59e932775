"""Prometheus metrics of the console (none carries an email, a site secret or a token)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LOGINS = Counter("replaypipe_console_logins", "Login attempts, by outcome", ["outcome"])
REFUSED = Counter(
    "replaypipe_console_refused", "Requests refused by a role check, by action", ["action"]
)
CSRF_REFUSED = Counter("replaypipe_console_csrf_refused", "State changes refused for CSRF")
AUDIT_EVENTS = Counter("replaypipe_console_audit_events", "Audit events published", ["action"])
SETTINGS_SAVES = Counter("replaypipe_console_settings_saves", "Site settings saved")
SINK_SECONDS = Histogram(
    "replaypipe_console_sink_seconds",
    "Time of one call to the sink's read API",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
