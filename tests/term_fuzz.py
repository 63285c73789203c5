"""Fuzzing binary_to_term, run by test_term.py in a subprocess: a crash of the decoder (a segfault,
a stack overflow) kills this process and fails the test instead of the test runner.

Every input must decode or raise TermError; nothing else, whatever the bytes."""

from __future__ import annotations

import struct
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oban_bridge.term import TermError, binary_to_term, term_to_binary

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    | st.tuples(inner, inner),
    max_leaves=12,
)
CONTAINER_HEADS = [b"l\xff\xff\xff\xff", b"t\xff\xff\xff\xff", b"i\xff\xff\xff\xff", b"h\xff", b"l\x00\x00\x00\x01",
                   b"t\x00\x00\x00\x01", b"h\x01", b"m\xff\xff\xff\xff", b"k\xff\xff", b"o\xff\xff\xff\xff\x00"]


def check(data: bytes, **kwargs: Any) -> None:
    try:
        binary_to_term(data, **kwargs)
    except TermError:
        pass


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=64))
def fuzz_raw(data: bytes) -> None:
    check(b"\x83" + data)
    check(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(plain, st.data())
def fuzz_mutated(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(term_to_binary(value, compressed=data.draw(st.sampled_from([None, 6]))))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "head"]))
        at = data.draw(st.integers(0, max(0, len(encoded) - 1)))
        if op == "flip" and encoded:
            encoded[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del encoded[at:]
        elif op == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=6))
        else:
            encoded[at:at] = data.draw(st.sampled_from(CONTAINER_HEADS))
    check(bytes(encoded))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 200_000), st.sampled_from([b"l\x00\x00\x00\x01", b"h\x01", b"t\x00\x00\x00\x01a\x01"]),
       st.booleans())
def fuzz_deep(depth: int, head: bytes, compressed: bool) -> None:
    body = head * depth + b"j"
    if head.startswith(b"l"):
        body += b"j" * depth
    data = b"\x83" + body
    if compressed:
        import zlib

        data = b"\x83P" + struct.pack(">I", len(body)) + zlib.compress(body)
    check(data, limit=1 << 22)


if __name__ == "__main__":
    sys.setrecursionlimit(200_000)  # a recursive decoder would now overflow the C stack, not raise
    fuzz_raw()
    fuzz_mutated()
    fuzz_deep()
    print("ok")
