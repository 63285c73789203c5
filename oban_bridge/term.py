"""Erlang terms on the Python side: `:erlang.phash2/1,2` of binaries.

`phash2` of a binary is the 32-bit `make_hash2` of OTP's erts (Bob Jenkins' lookup2 block hash,
seeded with 13 x the golden-ratio constant), masked to 27 bits for phash2/1. Hephaestus'
AdvanceWorker locks an instance with `pg_advisory_xact_lock(:erlang.phash2(instance_id))`; this
lets Python take the very same lock. Checked against values computed by Erlang/OTP 25
(elixir_interop_fixtures/phash2_samples.json).
"""

from __future__ import annotations

_GOLDEN = 0x9E3779B9
_MASK = 0xFFFFFFFF


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - b - c) & _MASK; a ^= c >> 13
    b = (b - c - a) & _MASK; b ^= (a << 8) & _MASK
    c = (c - a - b) & _MASK; c ^= b >> 13
    a = (a - b - c) & _MASK; a ^= c >> 12
    b = (b - c - a) & _MASK; b ^= (a << 16) & _MASK
    c = (c - a - b) & _MASK; c ^= b >> 5
    a = (a - b - c) & _MASK; a ^= c >> 3
    b = (b - c - a) & _MASK; b ^= (a << 10) & _MASK
    c = (c - a - b) & _MASK; c ^= b >> 15
    return a, b, c  # fmt: skip


def _block_hash(data: bytes, initval: int) -> int:
    a = b = _GOLDEN
    c = initval
    length = len(data)
    i = 0
    while length - i >= 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
        i += 12
    tail = data[i:]
    c = (c + length) & _MASK
    # The last 11 bytes: a takes bytes 0-3, b 4-7, c 8-10 shifted up one byte (its low byte
    # is the length).
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + (int.from_bytes(tail[8:11], "little") << 8)) & _MASK
    _, _, c = _mix(a, b, c)
    return c


def _hash2_binary(data: bytes) -> int:
    seed = (13 * _GOLDEN) & _MASK  # HCONST_13 + 0
    return seed if not data else _block_hash(data, seed)


def phash2(value: str | bytes, range_: int = 1 << 27) -> int:
    """`:erlang.phash2(binary)` (range 2^27) or `:erlang.phash2(binary, range)`.

    A Python `str` is an Elixir string: its UTF-8 bytes are the binary.
    """
    data = value.encode() if isinstance(value, str) else bytes(value)
    if not 1 <= range_ <= 1 << 32:
        raise ValueError("range must be between 1 and 2^32")
    return _hash2_binary(data) % range_
