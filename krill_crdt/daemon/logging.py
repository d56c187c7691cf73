"""The daemon's log: ``[log] level`` and ``format`` applied to the ``krill.*`` logger tree.

Only ``krill serve`` calls :func:`configure_logging`; importing the library never touches
logging beyond the ``NullHandler`` on ``krill``. Loggers under ``krill`` (``krill.runtime``,
``krill.sync``, ``krill.transport.mqtt``, ``krill.daemon``, ...) log at the configured level;
other libraries' loggers (aiohttp, asyncio) only from warning up, so a debug log stays ours.

``format = "json"`` writes one object per line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message``, every extra field passed with ``extra=``, and ``exception`` with the
traceback when there is one.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from ..runtime.config import LogConfig

__all__ = ["JsonFormatter", "configure_logging"]

#: The root of the project's logger tree.
ROOT_LOGGER = "krill"

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; whatever else is on a record came in through ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # default=str: an extra field that JSON cannot hold is shown, not lost with the line.
        return orjson.dumps(entry, default=str).decode()


def configure_logging(config: LogConfig, stream: TextIO | None = None) -> logging.Handler:
    """Send the log to ``stream`` (stderr by default) in the configured level and format.

    Calling it again replaces the handler it installed before.

    Returns:
        The handler installed on the root logger.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    handler.set_name("krill-daemon")

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "krill-daemon"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(ROOT_LOGGER).setLevel(config.level.upper())
    return handler
