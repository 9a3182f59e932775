"""JSON-lines logging shared by all services.

Every line is one JSON object: ``ts``, ``level``, ``service``, ``logger``, ``msg``
and the context fields given through ``extra=``. Only fields named in
:data:`CONTEXT_FIELDS` are written, each under its own name (a port as
``port``, a migration as ``migration``); any other ``extra=`` key is dropped and
only its name is listed under ``dropped_fields``. That vocabulary is what keeps
payloads, typed values and tokens out of the logs: a new field has to be
declared here, in review, before it can reach a log line.

Repeated warnings and errors (the same logger, message template and level) are
written at most :data:`REPEAT_LIMIT` times per :data:`REPEAT_INTERVAL_S`; the
next line written for them carries ``suppressed``: how many were left out.
Chatty libraries (:data:`NOISY_LIBRARIES`) keep only their warnings.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

CONTEXT_FIELDS: Final[frozenset[str]] = frozenset(
    {
        # where in the pipeline
        "service",
        "site",
        "session",
        "topic",
        "partition",
        "offset",
        "group",
        # what and how much
        "port",
        "migration",
        "version",
        "count",
        "rows",
        "events",
        "bytes",
        "attempt",
        "delay_s",
        "duration_s",
        "exit_code",
        "pid",
        "status",
        # why: an error class name or a sentence written by our code, never content
        "reason",
        "error_type",
        # set by RepeatedLogFilter
        "suppressed",
    }
)
"""The ``extra=`` names a log line may carry; nothing else is written."""

NOISY_LIBRARIES: Final[tuple[str, ...]] = (
    "aiokafka",
    "kafka",
    "faust",
    "mode",
    "aiohttp.access",
    "confluent_kafka",
)
"""Libraries whose info lines are noise for an operator: they log warnings and up."""

REPEAT_LIMIT: Final = 10
REPEAT_INTERVAL_S: Final = 60.0

# A context string longer than this is cut: a reason is a sentence, not a dump.
MAX_FIELD_CHARS: Final = 300

# Attributes every LogRecord has; anything else on a record came through extra=.
_RECORD_ATTRIBUTES: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _context_value(value: object) -> object:
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "…"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg and declared context fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line; undeclared ``extra=`` fields are dropped by name."""
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        dropped: list[str] = []
        for name, value in record.__dict__.items():
            if name in _RECORD_ATTRIBUTES or value is None:
                continue
            if name in CONTEXT_FIELDS:
                doc[name] = _context_value(value)
            else:
                dropped.append(name)
        if dropped:
            doc["dropped_fields"] = sorted(dropped)
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = record.exc_info[0].__name__
            doc["trace"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


@dataclass(slots=True)
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0


class RepeatedLogFilter(logging.Filter):
    """Writes the same warning or error at most ``limit`` times per ``interval_s``.

    "The same" is the logger, the message template (before ``%`` arguments are
    filled in) and the level, so a reconnect loop that logs one line per attempt
    while Kafka is down costs ``limit`` lines a minute, not thousands a second.
    The first line written after a quiet spell carries ``suppressed=N``.
    Info and debug lines always pass.
    """

    # Templates are code constants, so few; the cap only guards against a
    # library that formats its message before logging it.
    MAX_TRACKED: Final = 1024

    def __init__(
        self,
        limit: int = REPEAT_LIMIT,
        interval_s: float = REPEAT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._limit = limit
        self._interval_s = interval_s
        self._clock = clock
        self._windows: dict[tuple[str, str, int], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat beyond the limit; sets ``record.suppressed`` on the next one kept."""
        if record.levelno < logging.WARNING:
            return True
        now = self._clock()
        key = (record.name, str(record.msg), record.levelno)
        window = self._windows.get(key)
        if window is None or now - window.started >= self._interval_s:
            if window is None and len(self._windows) >= self.MAX_TRACKED:
                self._forget_closed_windows(now)
            carried = window.suppressed if window is not None else 0
            window = self._windows[key] = _Window(started=now)
            if carried:
                record.suppressed = carried
        if window.written >= self._limit:
            window.suppressed += 1
            return False
        window.written += 1
        return True

    def _forget_closed_windows(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w.started >= self._interval_s]:
            del self._windows[key]
        if len(self._windows) >= self.MAX_TRACKED:
            self._windows.clear()


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines, with repeats rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(service))
    handler.addFilter(RepeatedLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def logging_config(service: str, level: str) -> dict[str, Any]:
    """The same setup as :func:`setup_logging`, as a ``dictConfig`` (for faust's Worker)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter, "service": service}},
        "filters": {"repeats": {"()": RepeatedLogFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["repeats"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"level": "WARNING"} for name in NOISY_LIBRARIES},
    }
