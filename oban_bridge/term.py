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


# ---------------------------------------------------------------------------------------------
# External Term Format. Encoding is our own, so the bytes are those `:erlang.term_to_binary/2` of
# OTP 25 writes (ATOM_EXT for atoms, small maps with keys in term order, bignums), checked against
# elixir_interop_fixtures/etf_samples.json. Decoding is our own too (binary_to_term): iterative,
# bounded, and limited to plain data, so no row can crash or exhaust a node.

import struct  # noqa: E402
import zlib  # noqa: E402
from typing import Any  # noqa: E402


class Atom(str):
    """An Erlang atom (`:ok`, `MyApp.Worker` is `Atom("Elixir.MyApp.Worker")`)."""


class TermError(ValueError):
    pass


def _atom(name: str) -> bytes:
    data = name.encode()
    if len(data) > 255:
        raise TermError(f"atom too long: {name[:20]}…")
    if data.isascii():
        return b"d" + struct.pack(">H", len(data)) + data  # ATOM_EXT, as OTP 25 writes it
    return b"v" + struct.pack(">H", len(data)) + data  # ATOM_UTF8_EXT


def _rank(value: Any) -> tuple[int, Any]:
    """Erlang term order for map keys: number < atom < tuple < map < list < binary."""
    if value is None:
        return (1, "nil")
    if isinstance(value, bool):
        return (1, "true" if value else "false")
    if isinstance(value, Atom):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, tuple):
        return (2, (len(value), [_rank(v) for v in value]))
    if isinstance(value, list):
        return (5, [_rank(v) for v in value])
    if isinstance(value, str):
        return (6, value.encode())
    if isinstance(value, (bytes, bytearray)):
        return (6, bytes(value))
    return (7, repr(value))


def _encode(value: Any, out: bytearray, depth: int = 0) -> None:
    if depth > MAX_DEPTH:  # also what stops a value that contains itself
        raise TermError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out += _atom("nil")
    elif value is True:
        out += _atom("true")
    elif value is False:
        out += _atom("false")
    elif isinstance(value, Atom):
        out += _atom(str(value))
    elif isinstance(value, int):
        if 0 <= value <= 255:
            out += b"a" + bytes([value])
        elif -(2**31) <= value < 2**31:
            out += b"b" + struct.pack(">i", value)
        else:
            magnitude = abs(value)
            digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
            if len(digits) <= 255:
                out += b"n" + bytes([len(digits), 1 if value < 0 else 0]) + digits
            else:
                out += b"o" + struct.pack(">I", len(digits)) + bytes([1 if value < 0 else 0]) + digits
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TermError(f"cannot encode {value!r}: Erlang floats are finite")
        out += b"F" + struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode()
        out += b"m" + struct.pack(">I", len(data)) + data
    elif isinstance(value, (bytes, bytearray)):
        out += b"m" + struct.pack(">I", len(value)) + bytes(value)
    elif isinstance(value, tuple):
        out += (b"h" + bytes([len(value)])) if len(value) <= 255 else (b"i" + struct.pack(">I", len(value)))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, list):
        if not value:
            out += b"j"
        elif len(value) <= 65535 and all(type(v) is int and 0 <= v <= 255 for v in value):
            out += b"k" + struct.pack(">H", len(value)) + bytes(value)  # STRING_EXT, as Erlang does
        else:
            out += b"l" + struct.pack(">I", len(value))
            for item in value:
                _encode(item, out, depth + 1)
            out += b"j"
    elif isinstance(value, dict):
        out += b"t" + struct.pack(">I", len(value))
        items = sorted(value.items(), key=lambda kv: _rank(kv[0])) if len(value) <= 32 else list(value.items())
        for key, item in items:
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise TermError(f"cannot encode {type(value).__name__} as an Erlang term")


def term_to_binary(value: Any, *, compressed: int | None = None) -> bytes:
    """`:erlang.term_to_binary(value)` or with `compressed: level` (used only when smaller, as
    Erlang does)."""
    body = bytearray()
    _encode(value, body)
    if compressed:
        packed = zlib.compress(bytes(body), compressed)
        if 5 + len(packed) < len(body):  # 'P' + size + zlib data
            return b"\x83P" + struct.pack(">I", len(body)) + packed
    return b"\x83" + bytes(body)


# Decoding limits: what recorded output and `term` args fields hold is small; a row is untrusted
# input, so depth and size are bounded before any work is done, and nothing recurses.
MAX_DEPTH = 100
# Python hashes numbers (and tuples of them) predictably, so a map of crafted bignum keys would
# make every insert collide: decoding turns quadratic (75,000 keys inside 1 MiB: 40 s). Strings
# and binaries hash with a per-process secret. So a term may hold this many map keys that are not.
MAX_PLAIN_HASH_KEYS = 2_000

_OPEN = object()  # stack marker: the container under construction


def binary_to_term(data: bytes, *, limit: int = 1 << 20, max_depth: int = MAX_DEPTH) -> Any:
    """`:erlang.binary_to_term(data, [:safe])` for plain data: maps, lists, tuples, binaries
    (as str when UTF-8, else bytes), numbers, and atoms (nil/true/false as None/True/False, others
    as `Atom`). Anything else — pids, refs, funs, improper lists — anything larger than `limit`
    bytes before or after decompression, nested deeper than `max_depth`, truncated or with trailing
    bytes is a TermError. The decoder is iterative and every length is checked against the bytes
    left, so no input can exhaust the stack or allocate more than its own size in elements."""
    data = bytes(data)
    if len(data) > limit:
        raise TermError(f"term of {len(data)} bytes is over the limit of {limit}")
    if len(data) < 2 or data[0] != 131:
        raise TermError("not a valid Erlang term: expected version byte 131")
    if data[1] == 80:  # 'P': zlib-compressed, with the uncompressed size first
        if len(data) < 6:
            raise TermError("not a valid Erlang term: truncated compressed header")
        (size,) = struct.unpack(">I", data[2:6])
        if size > limit:
            raise TermError(f"term of {size} bytes (uncompressed) is over the limit of {limit}")
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(data[6:], size + 1)
        except zlib.error as exc:
            raise TermError(f"not a valid Erlang term: {exc}") from None
        if len(body) != size or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise TermError("not a valid Erlang term: compressed size does not match")
    else:
        body = data[1:]
    return _decode(body, max_depth)


def _decode(buf: bytes, max_depth: int) -> Any:
    end = len(buf)
    pos = 0
    # Each frame: [kind, items, remaining]; kind is "l" (list), "t" (tuple) or "m" (map).
    stack: list[list[Any]] = []
    weak_keys = 0  # map keys with predictable hashes so far (MAX_PLAIN_HASH_KEYS)

    def need(n: int) -> None:
        if pos + n > end:
            raise TermError("not a valid Erlang term: truncated")

    while True:
        need(1)
        tag = buf[pos]
        pos += 1
        value: Any = _OPEN
        if tag == 97:  # SMALL_INTEGER_EXT
            need(1)
            value = buf[pos]
            pos += 1
        elif tag == 98:  # INTEGER_EXT
            need(4)
            (value,) = struct.unpack_from(">i", buf, pos)
            pos += 4
        elif tag == 70:  # NEW_FLOAT_EXT
            need(8)
            (value,) = struct.unpack_from(">d", buf, pos)
            pos += 8
            if value != value or value in (float("inf"), float("-inf")):
                raise TermError("not a valid Erlang term: Erlang has no NaN or infinite floats")
        elif tag == 99:  # FLOAT_EXT: 31 bytes of "%.20e"
            need(31)
            text = buf[pos:pos + 31].split(b"\x00", 1)[0]
            pos += 31
            try:
                value = float(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise TermError("not a valid Erlang term: bad float") from None
            if value != value or value in (float("inf"), float("-inf")) or b"_" in text or text != text.strip():
                raise TermError("not a valid Erlang term: bad float")
        elif tag in (100, 115, 118, 119):  # ATOM_EXT, SMALL_ATOM_EXT, ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT
            width = 2 if tag in (100, 118) else 1
            need(width)
            size = int.from_bytes(buf[pos:pos + width], "big")
            pos += width
            need(size)
            raw = buf[pos:pos + size]
            pos += size
            try:
                name = raw.decode("utf-8") if tag in (118, 119) else raw.decode("latin-1")
            except UnicodeDecodeError:
                raise TermError("not a valid Erlang term: bad atom") from None
            if len(name) > 255:
                raise TermError("not a valid Erlang term: atom longer than 255 characters")
            value = {"nil": None, "true": True, "false": False}.get(name, _OPEN)
            if value is _OPEN:
                value = Atom(name)
        elif tag == 109:  # BINARY_EXT
            need(4)
            (size,) = struct.unpack_from(">I", buf, pos)
            pos += 4
            need(size)
            raw = buf[pos:pos + size]
            pos += size
            try:
                value = raw.decode()
            except UnicodeDecodeError:
                value = raw
        elif tag == 107:  # STRING_EXT: a list of bytes
            need(2)
            (size,) = struct.unpack_from(">H", buf, pos)
            pos += 2
            need(size)
            value = list(buf[pos:pos + size])
            pos += size
        elif tag == 106:  # NIL_EXT
            value = []
        elif tag in (110, 111):  # SMALL_BIG_EXT, LARGE_BIG_EXT
            width = 1 if tag == 110 else 4
            need(width + 1)
            size = int.from_bytes(buf[pos:pos + width], "big")
            sign = buf[pos + width]
            pos += width + 1
            need(size)
            magnitude = int.from_bytes(buf[pos:pos + size], "little")
            pos += size
            value = -magnitude if sign else magnitude
        elif tag in (104, 105, 108, 116):  # SMALL_TUPLE, LARGE_TUPLE, LIST, MAP
            width = 1 if tag == 104 else 4
            need(width)
            count = int.from_bytes(buf[pos:pos + width], "big")
            pos += width
            # Every element takes at least one byte: a count the input cannot hold is a lie.
            if count * (2 if tag == 116 else 1) > end - pos:
                raise TermError("not a valid Erlang term: truncated")
            if len(stack) >= max_depth:
                raise TermError(f"term nested deeper than {max_depth} levels")
            kind = "t" if tag in (104, 105) else "l" if tag == 108 else "m"
            remaining = count * 2 if kind == "m" else count
            if remaining:
                stack.append([kind, [], remaining])
                continue
            if kind == "l":
                need(1)
                if buf[pos] != 106:
                    raise TermError("not a valid Erlang term: improper list")
                pos += 1
                value = []
            else:
                value = () if kind == "t" else {}
        else:
            raise TermError(f"refusing to decode an Erlang term of type {tag}")
        # Hand the finished value to the containers it completes.
        while True:
            if not stack:
                if pos != end:
                    raise TermError("not a valid Erlang term: trailing bytes")
                return value
            frame = stack[-1]
            frame[1].append(value)
            frame[2] -= 1
            if frame[2]:
                break
            stack.pop()
            kind, items = frame[0], frame[1]
            if kind == "l":
                need(1)
                if buf[pos] != 106:
                    raise TermError("not a valid Erlang term: improper list")
                pos += 1
                value = items
            elif kind == "t":
                value = tuple(items)
            else:
                keys = items[0::2]
                weak_keys += sum(1 for k in keys if not isinstance(k, (str, bytes)))
                if weak_keys > MAX_PLAIN_HASH_KEYS:
                    raise TermError(f"term has over {MAX_PLAIN_HASH_KEYS} map keys that are not strings")
                try:
                    value = {_key(k): v for k, v in zip(keys, items[1::2])}
                except TypeError:
                    raise TermError("not a valid Erlang term: a map or other unhashable map key") from None
                if len(value) != len(keys):
                    # Duplicates (Erlang refuses them), or keys Python cannot tell apart that Erlang
                    # can: 1 and true, 1 and 1.0, :x and "x", [1] and {1}.
                    raise TermError("map keys that are equal in Python (e.g. 1 and true, :x and \"x\")")


def _key(value: Any) -> Any:
    """Map keys must be hashable in Python: lists become tuples, maps are refused."""
    if isinstance(value, list):
        return tuple(_key(v) for v in value)
    return value
