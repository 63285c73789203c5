"""JSON for args, meta and errors: orjson's speed, with the integers Elixir can write kept whole.

Elixir integers have no size limit and Jason writes them as digits; PostgreSQL's jsonb keeps them
exact (numeric). orjson reads an integer past 64 bits as a float (rounded) and refuses to write one.
So a text holding a run of 20 or more digits — the only way to spell such an integer — is read by
the standard library, and a value orjson cannot write is written by it too. Everything else, the
common case, stays on orjson.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

JSONDecodeError = json.JSONDecodeError  # orjson.JSONDecodeError is a subclass of it

_LONG_DIGITS = re.compile(rb"\d{20}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{20}")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    pattern = _LONG_DIGITS_TEXT if isinstance(data, str) else _LONG_DIGITS
    if pattern.search(data) is None:  # type: ignore[arg-type]
        return orjson.loads(data)
    orjson.loads(data)  # the same errors as the fast path for text that is not JSON
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def dumps(value: Any) -> bytes:
    """Compact JSON; a TypeError for what neither encoder can write (and a ValueError for NaN or
    an infinity next to a long integer, which orjson would have written as null).

    A UTC datetime is written with `Z`, as Jason writes an Elixir DateTime in UTC
    (DateTime.to_iso8601/1): args holding one read the same whichever language inserted them."""
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
    # ensure_ascii=False and compact separators: the bytes orjson would have written.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_plain).encode()


def _plain(value: Any) -> Any:
    """What orjson writes natively, for the standard library's encoder (long integers' path)."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_UTC_Z))
