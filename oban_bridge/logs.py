"""How `oban-bridge start` logs: a level and a format (text or one JSON object per line) from
options or OBAN_BRIDGE_LOG_LEVEL / OBAN_BRIDGE_LOG_FORMAT, installed only when the application
has not configured logging itself — handlers a worker module set up at import are never replaced.

Records carry their fields as attributes (`job_id`, `worker`, `queue`, `attempt`, `state`,
`duration`, `error`…); the JSON format writes every such field, the text format appends them.

Per job, as Elixir (which logs nothing per job until `Oban.Telemetry.attach_default_logger/1`):
failures, cancels and discards at WARNING always; every other outcome only with `--log-jobs`.
A line per job has to be cheap, so (measured with `python bench/run.py --only joblog`):
- the formatters render the time once a second and find a record's fields once per shape of record;
- our handler writes lines into a 64 KiB buffer that a thread flushes every 0.2 s, and at once for
  WARNING and above, instead of a write(2) per line (stderr is line-buffered);
- no QueueHandler: under the GIL, formatting on a thread of its own cost more CPU in total than it
  took off the event loop.
"""

from __future__ import annotations

import atexit
import io
import json
import math
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

import orjson

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
# Attributes every LogRecord has: anything else was passed in `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OURS = "_oban_bridge_handler"
_shapes: dict[tuple[str, ...], tuple[str, ...]] = {}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` attributes of a record, in the order given. Records from one call site share
    their attribute names, so which ones are fields is worked out once per such shape."""
    attrs = record.__dict__
    shape = tuple(attrs)
    names = _shapes.get(shape)
    if names is None:
        names = tuple(k for k in shape if k not in _STANDARD and not k.startswith("_"))
        if len(_shapes) < 1024:
            _shapes[shape] = names
    return {k: attrs[k] for k in names}


class _Clock:
    """`YYYY-MM-DD?HH:MM:SS` in UTC, rendered once per second rather than once per line."""

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime(f"%Y-%m-%d{self.sep}%H:%M:%S", time.gmtime(second))
        return self.text


def _traceback(record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return record.exc_text or None


def _text(value: Any) -> str:
    """str() of anything, for a log line: an object whose __str__ raises must not cost the record."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        try:
            return repr(value)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(value).__name__}>"


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-safe: string keys, finite numbers (NaN and infinities as strings: JSON has none), and
    anything else as its text. For the rare record orjson refuses."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _text(value)
    if depth < 20 and isinstance(value, dict):
        return {k if isinstance(k, str) else _text(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 20 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return _text(value)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not fit the format: keep the record
        return f"{_text(record.msg)} (arguments {_text(record.args)} did not fit the format)"


class JsonFormatter(logging.Formatter):
    """One JSON object a line. `time`, `level`, `logger`, `message` and `traceback` are always
    the record's own: an `extra=` field of the same name is written as `extra_<name>`."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("T")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": f"{self._clock(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in fields(record).items():
            out[f"extra_{key}" if key in _OWN_KEYS else key] = value
        trace = _traceback(record)
        if trace:
            out["traceback"] = trace
        try:
            return orjson.dumps(out, default=_text, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, ValueError):  # an integer past 64 bits, a key orjson refuses: never lost
            return json.dumps(_plain(out), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_OWN_KEYS = frozenset({"time", "level", "logger", "message", "traceback"})


class TextFormatter(logging.Formatter):
    """`2026-11-24 01:02:03,456 WARNING oban_bridge.job message key=value …`, traceback below."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock(" ")

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._clock(record.created)},{int(record.msecs):03d} {record.levelname} {record.name} " \
               f"{_message(record)}"
        extra = fields(record)
        shown = getattr(record, "_in_message", None)
        if shown:
            extra = {k: v for k, v in extra.items() if k not in shown}
        if extra:
            # A multi-line value (an error with its stacktrace) ends the line, never with a blank one.
            line += " " + " ".join(f"{k}={v.rstrip() if type(v) is str else _text(v)}" for k, v in extra.items())
        trace = _traceback(record)
        return f"{line}\n{trace}" if trace else line


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the file descriptor of `stream` through a buffer of its own: a thread flushes it
    every `interval` seconds, a record at WARNING or above flushes at once, and so do `flush()`
    and exit. A busy node writes a few large chunks a second instead of a syscall per line."""

    def __init__(self, stream: Any = None, interval: float = 0.2) -> None:
        stream = stream if stream is not None else sys.stderr
        self._origin = stream  # kept alive: closing it would close the descriptor written to
        try:
            raw = io.FileIO(stream.fileno(), "w", closefd=False)
            buffered: Any = io.TextIOWrapper(io.BufferedWriter(raw, 65536), encoding="utf-8",
                                             errors="backslashreplace", write_through=False)
        except (AttributeError, OSError, io.UnsupportedOperation):
            buffered = stream  # no descriptor (a test's captured stream): write to it as it is
        super().__init__(buffered)
        self._dirty = False
        self._closed = threading.Event()
        self._interval = interval
        threading.Thread(target=self._flusher, name="oban-bridge-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text)
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
                else:
                    self._dirty = True
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never break the caller (as StreamHandler)
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._dirty = False
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()

    def _flusher(self) -> None:
        while not self._closed.wait(self._interval):
            if self._dirty:
                self.flush()


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def settings(level: str | None, fmt: str | None, jobs: bool | None = None) -> tuple[str, str, bool]:
    """The option, else the environment variable, else INFO / text / no per-job lines; a bad value
    is a ValueError."""
    level_from = "OBAN_BRIDGE_LOG_LEVEL" if not level and os.environ.get("OBAN_BRIDGE_LOG_LEVEL") else "log level"
    format_from = "OBAN_BRIDGE_LOG_FORMAT" if not fmt and os.environ.get("OBAN_BRIDGE_LOG_FORMAT") else "log format"
    level = (level or os.environ.get("OBAN_BRIDGE_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("OBAN_BRIDGE_LOG_FORMAT") or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"{level_from} must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"{format_from} must be text or json, got {fmt!r}")
    if jobs is None:
        raw = os.environ.get("OBAN_BRIDGE_LOG_JOBS", "").strip().lower()
        if raw not in _TRUE + _FALSE:
            raise ValueError(f"OBAN_BRIDGE_LOG_JOBS must be 1 or 0, got {raw!r}")
        jobs = raw in _TRUE
    return level, fmt, jobs


_handler: BufferedStreamHandler | None = None


def flush() -> None:
    """Write every buffered line (before `os._exit`, which skips atexit)."""
    if _handler is not None:
        _handler.flush()


def mark(handler: logging.Handler) -> logging.Handler:
    """Flag a handler as the CLI's own, which `configure` may replace."""
    setattr(handler, _OURS, True)
    return handler


def release() -> None:
    """Take the CLI's provisional handlers off the root logger before a worker module is imported,
    so the module's own `logging.basicConfig(...)` works and its handlers are not doubled by ours."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            if handler is not _handler:
                handler.close()


def configure(level: str, fmt: str, jobs: bool = False) -> None:
    """Install our handler on the root logger unless the application installed one of its own
    (then only oban_bridge's levels are set, and its records flow to the application's handlers
    alone)."""
    global _handler
    from .executor import log_routine_outcomes

    ours = logging.getLogger("oban_bridge")
    ours.setLevel(level)
    # A worker module's logging.config.dictConfig() disables every logger that exists then and is
    # not named in its config (disable_existing_loggers defaults to True): oban_bridge's own would
    # go silent, failures included. They were not the module's to silence.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "oban_bridge" or name.startswith("oban_bridge.")):
            logger.disabled = False
    log_routine_outcomes(jobs)
    root = logging.getLogger()
    # Handlers the application installed — on the root, or on oban_bridge's own logger — take
    # our records; adding ours to the root as well would print each line twice.
    theirs = [h for h in (*root.handlers, *ours.handlers) if not getattr(h, _OURS, False)]
    release()
    if theirs:
        return
    if _handler is not None:
        _handler.close()
    _handler = BufferedStreamHandler(sys.stderr)
    _handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(mark(_handler))
    root.setLevel(level)


atexit.register(flush)
