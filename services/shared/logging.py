"""JSON-lines logging shared by all services.

Log records carry ``site`` and ``session`` when given through ``extra=``; never
log event payloads or masked values.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_CONTEXT_FIELDS = ("site", "session", "topic", "partition", "offset", "reason", "count")


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg and context fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = record.exc_info[0].__name__
            doc["trace"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries: keep their warnings, drop their info noise.
    for name in ("aiokafka", "faust", "mode", "kafka", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
