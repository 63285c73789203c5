"""The notification wire format, checked against every payload a real Elixir node sent."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oban_bridge.notifier import channel, decode, encode

from .conftest import fixture


def test_channels_are_prefixed() -> None:
    assert channel("public", "insert") == "public.oban_insert"
    assert channel("tenant", "signal") == "tenant.oban_signal"
    assert {n["channel"] for n in fixture("notifications.jsonl")} <= {
        channel("public", c) for c in ("insert", "signal", "gossip", "metrics", "sonar", "cronitor", "leader")
    }


@pytest.mark.parametrize("note", fixture("notifications.jsonl"), ids=lambda n: n["channel"])
def test_every_elixir_payload_decodes_and_reencodes(note: dict[str, Any]) -> None:
    value = decode(note["payload"])
    assert isinstance(value, dict)
    if note["payload"].startswith("Z:"):
        assert len(gzip.decompress(base64.b64decode(note["payload"][2:]))) > 512
        assert decode(encode(value)) == value
        assert encode(value).startswith("Z:")
    else:
        # Jason writes small maps with sorted keys and no spaces; so must we.
        assert encode(value) == note["payload"]


def test_legacy_bare_gzip_is_accepted() -> None:
    legacy = base64.b64encode(gzip.compress(b'{"queue":"a"}')).decode()
    assert legacy.startswith("H4sI")
    assert decode(legacy) == {"queue": "a"}


@pytest.mark.parametrize("junk", ["", "{", "Z:!!!", "Z:" + base64.b64encode(b"plain").decode(), "H4sIxx"])
def test_malformed_payloads_raise_value_error(junk: str) -> None:
    with pytest.raises(ValueError):
        decode(junk)


json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40)


@given(st.dictionaries(st.text(max_size=10), st.lists(json_leaf, max_size=60) | json_leaf, max_size=12))
def test_encode_decode_round_trip(value: dict[str, Any]) -> None:
    text = encode(value)
    assert decode(text) == value
    assert text.startswith("Z:") == (len(text) > 512 or text.startswith("Z:"))
