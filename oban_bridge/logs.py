"""How `oban-bridge start` logs: a level and a format (text or one JSON object per line) from
options or OBAN_BRIDGE_LOG_LEVEL / OBAN_BRIDGE_LOG_FORMAT, installed only when the application
has not configured logging itself — handlers a worker module set up at import are never replaced.

Records carry their fields as attributes (`job_id`, `worker`, `queue`, `attempt`, `state`,
`duration`, `error`…); the JSON format writes every such field, the text format appends them."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from typing import Any

import orjson

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
# Attributes every LogRecord has: anything else was passed in `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OURS = "_oban_bridge_handler"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(fields(record))
        if record.exc_info:
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = fields(record)
        if extra:
            first, _, rest = line.partition("\n")
            line = first + " " + " ".join(f"{k}={v}" for k, v in extra.items()) + ("\n" + rest if rest else "")
        return line


JsonFormatter.converter = TextFormatter.converter = time.gmtime


def settings(level: str | None, fmt: str | None) -> tuple[str, str]:
    """The option, else the environment variable, else INFO / text; a bad value is a ValueError."""
    level = (level or os.environ.get("OBAN_BRIDGE_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("OBAN_BRIDGE_LOG_FORMAT") or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    return level, fmt


def mark(handler: logging.Handler) -> logging.Handler:
    """Flag a handler as the CLI's own, which `configure` may replace."""
    setattr(handler, _OURS, True)
    return handler


def configure(level: str, fmt: str) -> None:
    """Install our handler on the root logger unless the application installed one of its own
    (then only oban_bridge's level is set, and its records flow to the application's handlers)."""
    logging.getLogger("oban_bridge").setLevel(level)
    root = logging.getLogger()
    theirs = [h for h in root.handlers if not getattr(h, _OURS, False)]
    if theirs:
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = mark(logging.StreamHandler(sys.stderr))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
