"""Recorded output: a worker's return value kept in the job, as Oban Pro's `recorded: true` keeps
it and Oban Web shows it (oban_web lib/oban/web/resolver.ex decode_recorded/2): `meta.recorded`
is `true` and `meta.return` is the value as an Erlang term, base64 without padding. Terms are
compressed, as `term_to_binary(value, [:compressed])` would, whenever that makes them smaller.
"""

from __future__ import annotations

import base64
from typing import Any

from .job import Job
from .term import TermError, binary_to_term, term_to_binary

DEFAULT_LIMIT = 32_000  # bytes after compression and encoding, Pro's default (32kb)


class RecordedTooLarge(TermError):
    pass


def encode(value: Any, limit: int = DEFAULT_LIMIT) -> str:
    binary = term_to_binary(value, compressed=6)
    if len(binary) > limit:
        raise RecordedTooLarge(f"recorded output is {len(binary)} bytes, over the limit of {limit} bytes")
    return base64.b64encode(binary).decode().rstrip("=")


def decode(encoded: str, limit: int = 1 << 20) -> Any:
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        binary = base64.b64decode(padded, validate=True)
    except ValueError as exc:
        raise TermError(f"recorded output is not base64: {exc}") from None
    return binary_to_term(binary, limit=limit)


def fetch_recorded(job: Job, *, limit: int = 1 << 20) -> Any:
    """The value a worker (Elixir or Python) recorded for `job`, or None when nothing was."""
    meta = job.meta or {}
    if meta.get("recorded") is not True or not isinstance(meta.get("return"), str):
        return None
    return decode(meta["return"], limit=limit)
