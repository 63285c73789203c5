"""Recorded output: a worker's return value kept in the job, as Oban Pro's `recorded: true` keeps
it and Oban Web shows it (oban_web lib/oban/web/resolver.ex decode_recorded/2): `meta.recorded`
is `true` and `meta.return` (or the key given as `to`) is the value as an Erlang term, base64
without padding. Terms are compressed, as `term_to_binary(value, [:compressed])` would, whenever
that makes them smaller. The limit applies to what is stored — after compression and encoding,
as Pro's docs put it — so 32,000 means 32,000 characters in meta.
"""

from __future__ import annotations

import base64
from typing import Any

from .job import Job
from .term import TermError, binary_to_term, term_to_binary

DEFAULT_LIMIT = 32_000  # characters after compression and encoding, Pro's default (32kb)
# `to` may not overwrite the flag itself, nor meta that other features read back: a chain's id
# (the job would leave its chain), a deadline, or what Oban's Cron plugin wrote.
RESERVED = frozenset({"recorded", "chain_id", "deadline_at", "cron", "cron_expr", "cron_name", "cron_tz"})
_MISSING: Any = object()


class RecordedTooLarge(TermError):
    pass


class RecordedMissing(LookupError):
    """Nothing was recorded for the job (Pro's `{:error, :missing}`)."""


def encode(value: Any, limit: int = DEFAULT_LIMIT) -> str:
    encoded = base64.b64encode(term_to_binary(value, compressed=6)).decode().rstrip("=")
    if len(encoded) > limit:
        raise RecordedTooLarge(f"recorded output is {len(encoded):,} characters after compression and encoding, "
                               f"over the limit of {limit:,}")
    return encoded


def decode(encoded: str, limit: int = 1 << 20) -> Any:
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        binary = base64.b64decode(padded, validate=True)
    except ValueError as exc:
        raise TermError(f"recorded output is not base64: {exc}") from None
    return binary_to_term(binary, limit=limit)


def fetch_recorded(job: Job, *, to: str = "return", default: Any = _MISSING, limit: int = 1 << 20) -> Any:
    """The value a worker (Elixir or Python) recorded for `job` — None when it recorded `nil` —
    or, when nothing was recorded, `default` if given, else RecordedMissing (Pro's
    `fetch_recorded/1`: `{:ok, value}` or `{:error, :missing}`)."""
    meta = job.meta or {}
    value = meta.get(to)
    if meta.get("recorded") is not True or not isinstance(value, str):
        if default is not _MISSING:
            return default
        raise RecordedMissing(f"job {job.id} has nothing recorded in meta.{to}")
    return decode(value, limit=limit)
