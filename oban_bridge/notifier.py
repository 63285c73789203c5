"""Oban's notification wire format (lib/oban/notifier.ex, lib/oban/notifiers/postgres.ex).

Channels are `<prefix>.oban_<name>`; payloads are compact JSON, and a payload over 512 bytes is
sent as `Z:` + base64(gzip(json)). Decoding also accepts the legacy bare base64 gzip (`H4sI…`)
that older Oban and oban-py 0.7 still send.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from typing import Any

import orjson

COMPRESS_OVER = 512


def channel(prefix: str, name: str) -> str:
    return f"{prefix}.oban_{name}"


def encode(payload: Any) -> str:
    # Elixir maps of up to 32 keys are ordered by key, so Jason writes them sorted.
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    if len(data) <= COMPRESS_OVER:
        return data.decode()
    return "Z:" + base64.b64encode(gzip.compress(data)).decode()


def decode(payload: str) -> Any:
    """Raises ValueError on anything that is not one of Oban's encodings."""
    try:
        if payload.startswith("Z:"):
            data = gzip.decompress(base64.b64decode(payload[2:], validate=True))
        elif payload.startswith("H4sI"):
            data = gzip.decompress(base64.b64decode(payload, validate=True))
        else:
            data = payload.encode()
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"malformed compressed notification payload: {exc}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed notification payload: {exc}") from None
