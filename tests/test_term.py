"""Erlang terms: bytes equal to what :erlang.term_to_binary wrote (elixir_interop_fixtures/
etf_samples.json), safe decoding, and recorded output both ways."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oban_bridge.recorded import RecordedMissing, RecordedTooLarge, decode, encode, fetch_recorded
from oban_bridge.job import Job
from oban_bridge.term import Atom, TermError, binary_to_term, term_to_binary

from .conftest import fixture

SAMPLES = fixture("etf_samples.json")["samples"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["description"])
def test_bytes_equal_erlangs(sample: dict[str, Any]) -> None:
    plain = base64.b64decode(sample["etf_base64"])
    compressed = base64.b64decode(sample["etf_compressed_base64"])
    value = binary_to_term(plain)
    assert binary_to_term(compressed) == value
    assert term_to_binary(value) == plain
    assert term_to_binary(value, compressed=9) == compressed


def test_decoded_values_are_plain_python() -> None:
    by_name = {s["description"]: binary_to_term(base64.b64decode(s["etf_base64"])) for s in SAMPLES}
    assert by_name["string-keyed map"] == {"a": 1, "b": "two"}
    assert by_name["atoms"] == [Atom("ok"), Atom("error"), None, True, False, Atom("Elixir.MyApp.Worker")]
    assert by_name["tuple nested"] == (Atom("error"), (Atom("timeout"), 5000))
    assert by_name["big ints"] == [2147483648, 2**64, -(2**64)]
    assert by_name["binaries"][3] == b"\x00\x01\x02\xff"  # not UTF-8: stays bytes


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    | st.tuples(inner, inner),
    max_leaves=20,
)


@given(json_like)
def test_round_trip(value: Any) -> None:
    def norm(v: Any) -> Any:  # binaries come back as str when they are UTF-8, as Oban Web shows them
        if isinstance(v, bytes):
            try:
                return v.decode()
            except UnicodeDecodeError:
                return v
        if isinstance(v, list):
            if v and all(type(i) is int and 0 <= i <= 255 for i in v):
                return v
            return [norm(i) for i in v]
        if isinstance(v, tuple):
            return tuple(norm(i) for i in v)
        if isinstance(v, dict):
            return {norm(k): norm(i) for k, i in v.items()}
        return v

    for level in (None, 6):
        assert binary_to_term(term_to_binary(value, compressed=level)) == norm(value)


def test_unsafe_or_oversized_terms_are_refused() -> None:
    pid = b"\x83" + b"X" + term_to_binary(Atom("node@host"))[1:] + struct.pack(">III", 1, 2, 3)
    with pytest.raises(TermError):
        binary_to_term(pid)
    with pytest.raises(TermError, match="over the limit"):
        binary_to_term(term_to_binary("x" * 5000), limit=1000)
    bomb = term_to_binary("y" * 200_000, compressed=9)
    assert len(bomb) < 2000
    with pytest.raises(TermError, match="uncompressed"):
        binary_to_term(bomb, limit=100_000)
    with pytest.raises(TermError):
        binary_to_term(b"\x83\xff garbage")
    with pytest.raises(TermError):
        term_to_binary({1, 2})  # a set is no Erlang term


def test_recorded_format_reads_elixirs_and_limits() -> None:
    # What an Elixir worker recorded: base64 without padding of term_to_binary.
    sample = next(s for s in SAMPLES if s["description"] == "tuple ok")
    job = Job.new("W", meta={"recorded": True, "return": sample["etf_base64"].rstrip("=")})
    assert fetch_recorded(job) == (Atom("ok"), "result")
    with pytest.raises(RecordedMissing):
        fetch_recorded(Job.new("W"))
    assert fetch_recorded(Job.new("W"), default=None) is None
    text = encode({"pdf": "s3://x", "pages": [1, 2]})
    assert "=" not in text and decode(text) == {"pdf": "s3://x", "pages": [1, 2]}
    with pytest.raises(RecordedTooLarge):
        encode(list(range(100_000)), limit=1000)


def test_hostile_terms_never_crash_the_process() -> None:
    """tests/term_fuzz.py in a child process: a segfault or stack overflow fails this test."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "tests.term_fuzz"], cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


def test_deep_nesting_is_a_term_error() -> None:
    # 50,000 nested lists in 250 KB, inside the 1 MiB limit (erlpack segfaulted on this), and
    # 1,000 levels (erlpack raised RecursionError): both are TermError, at the depth limit.
    for depth in (1_000, 50_000):
        deep = b"\x83" + b"l\x00\x00\x00\x01" * depth + b"j" + b"j" * depth
        with pytest.raises(TermError, match="nested deeper than 100"):
            binary_to_term(deep)
    ok = b"\x83" + b"l\x00\x00\x00\x01" * 100 + b"j" + b"j" * 100
    value = binary_to_term(ok)
    for _ in range(100):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize("data", [
    b"\x83l\x00\x00\x00\x01a\x01a\x02",          # improper list [1 | 2]
    b"\x83l\xff\xff\xff\xffj",                    # a count the bytes cannot hold
    b"\x83t\x00\x00\x00\x01ja\x01j",             # %{[] => 1}, then a trailing byte
    b"\x83m\x00\x00\x00\x05ab",                   # truncated binary
    b"\x83a\x01a\x02",                            # trailing bytes
    b"\x83P\x00\x00\x00\x05" + b"x\x9c\x03\x00\x00\x00\x00\x01",  # size mismatch
    b"\x83t\x00\x00\x00\x01t\x00\x00\x00\x00a\x01",  # a map as a map key: unhashable
])
def test_malformed_terms_are_term_errors(data: bytes) -> None:
    with pytest.raises(TermError):
        binary_to_term(data)


def test_float_ext_and_small_atoms_decode() -> None:
    assert binary_to_term(b"\x83c" + b"1.50000000000000000000e+00".ljust(31, b"\x00")) == 1.5
    assert binary_to_term(b"\x83s\x02ok") == Atom("ok") and binary_to_term(b"\x83w\x03nil") is None
    assert binary_to_term(b"\x83k\x00\x03abc") == [97, 98, 99]  # a charlist, as Erlang sees it


def test_crafted_colliding_map_keys_are_refused_fast() -> None:
    """75,000 bignum keys that all hash alike fit in 1 MiB: refused before the dict goes quadratic."""
    import time

    p = 2**61 - 1
    pairs = b"".join(b"n\x0a\x00" + (k * p).to_bytes(10, "little") + b"a\x00" for k in range(1, 5001))
    data = b"\x83t" + struct.pack(">I", 5000) + pairs
    started = time.perf_counter()
    with pytest.raises(TermError, match="map keys that are not strings"):
        binary_to_term(data)
    assert time.perf_counter() - started < 1.0
    # Ordinary string-keyed maps of any size are fine.
    big = {f"k{i}": i for i in range(20_000)}
    assert binary_to_term(term_to_binary(big)) == big


@pytest.mark.parametrize("data", [
    b"\x83t\x00\x00\x00\x02a\x01a\x0ad\x00\x04truea\x0b",      # %{1 => 10, true => 11}
    b"\x83t\x00\x00\x00\x02d\x00\x01xa\x01m\x00\x00\x00\x01xa\x02",  # %{:x => 1, "x" => 2}
    b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02",              # a duplicate key
    b"\x83F" + struct.pack(">d", float("nan")),
    b"\x83F" + struct.pack(">d", float("inf")),
    b"\x83c" + b"nan".ljust(31, b"\x00"),
    b"\x83v\x01\x00" + b"a" * 256,                              # an atom of 256 characters
    b"\x83P\x00\x00\x00\x01" + __import__("zlib").compress(b"j") + b"extra",  # bytes after the stream
])
def test_what_erlang_would_refuse_or_python_would_merge_is_a_term_error(data: bytes) -> None:
    with pytest.raises(TermError):
        binary_to_term(data)


def test_encoding_a_too_deep_or_self_containing_value_is_a_term_error() -> None:
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(TermError, match="nested deeper"):
        term_to_binary(deep)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TermError, match="nested deeper"):
        term_to_binary(loop)
    with pytest.raises(TermError, match="finite"):
        term_to_binary({"x": float("inf")})
    ok: list[Any] = []
    for _ in range(100):
        ok = [ok]
    assert binary_to_term(term_to_binary(ok)) == ok


def test_jobs_show_renders_recorded_bignums_and_refuses_poison_quietly() -> None:
    import orjson

    from oban_bridge.cli.jobs import decode_recorded

    shown = decode_recorded({"recorded": True, "return": encode({"ok": 2**64})})
    assert shown == {"ok": str(2**64)}
    orjson.dumps(shown)
    poison = base64.b64encode(b"\x83" + b"l\x00\x00\x00\x01" * 50_000 + b"j" * 50_001).decode().rstrip("=")
    assert decode_recorded({"recorded": True, "return": poison}) == {"etf_base64": poison}
