"""Chains (Oban.Pro.Worker `chain:`, Oban.Pro.Workers.Chain): jobs of one partition run strictly
in insertion order, whatever their scheduling, retries or snoozes.

Storage and mechanism (Pro's are not public): a chained job carries `meta.chain_id`, a digest of
its partition (`by` worker, args keys and/or meta keys) — keyed with the worker's encryption key
when its args are encrypted, so the stored id reveals nothing of them. A job's upstream is the
latest earlier job (lower id) of its partition; by induction every earlier job has finished when
the upstream has. Before it runs, a job looks at its upstream, as the Chain doc describes:
- completed (or none left): run;
- cancelled / discarded: `ignore` runs, `hold` snoozes `hold_snooze` s, `halt` cancels the job
  with `{:cancel, :chain_halted}` — which its own successor then treats by *its* `on_cancelled`,
  so a halt stops at the next link unless `on_cancelled: "halt"` carries it on;
- executing or available: checks again every `wait_sleep` ms, `wait_retry` times, holding its
  slot, then snoozes `wait_snooze` s;
- scheduled or retryable: snoozes until the upstream's `scheduled_at`.
A chain wait is not an attempt: it goes back to `scheduled` with `attempt` as it was before the
fetch and `max_attempts` untouched, so a later failure's backoff is what it would have been had
the job never waited (Oban 2.23.1's snooze raises max_attempts and leaves attempt grown instead).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from ..errors import ValidationError

META_KEY = "chain_id"
POLICIES = ("ignore", "hold", "halt")
OPTIONS = ("by", "on_discarded", "on_cancelled", "hold_snooze", "wait_sleep", "wait_retry", "wait_snooze", "wait")


@dataclass(frozen=True, slots=True)
class Chain:
    worker: bool = True
    args: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    on_discarded: str = "ignore"
    on_cancelled: str = "ignore"
    hold_snooze: int = 60  # seconds
    wait_sleep: int = 1000  # milliseconds
    wait_retry: int = 10
    wait_snooze: int = 5  # seconds

    def chain_id(self, worker: str, args: dict[str, Any], meta: dict[str, Any], key: bytes | None = None) -> str:
        """A digest of the partition. With `key` (an encrypted worker's), a keyed BLAKE2b: without
        the key nobody can test guesses of the args against it (an SSN has few enough values)."""
        # OPT_UTC_Z as jsonc writes args: a UTC datetime given here and the "…Z" string a job
        # read back holds are one partition.
        data = orjson.dumps([worker if self.worker else None, {k: args.get(k) for k in self.args},
                             {k: meta.get(k) for k in self.meta}], option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)
        if key is None:
            return hashlib.blake2b(data, digest_size=12).hexdigest()
        return "k" + hashlib.blake2b(data, key=_mac_key(key), digest_size=12).hexdigest()


def _mac_key(encryption_key: bytes) -> bytes:
    """A key of its own for chain ids, derived from the encryption key (never the AES key itself)."""
    return hashlib.blake2b(encryption_key, person=b"oban_bridge.chid", digest_size=32).digest()


def _keys(value: Any, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(option, f"expected a key or a list of keys, got {value!r}")


def _positive(value: Any, option: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"chain.{option}", f"expected a whole number of at least {minimum}, got {value!r}")
    return value


def parse(value: Any) -> Chain | None:
    """`True`, or a mapping of the Chain doc's options: `by` (`"worker"`, `{"args": keys}`,
    `{"meta": keys}` or a list mixing them), `on_discarded`/`on_cancelled` (ignore|hold|halt),
    `hold_snooze` (s), `wait_sleep` (ms), `wait_retry`, `wait_snooze` (s; `wait` is its old name)."""
    if value is None or value is False:
        return None
    if value is True:
        return Chain()
    if not isinstance(value, dict) or set(value) - set(OPTIONS):
        raise ValidationError("chain", f"expected True or a mapping of {'/'.join(OPTIONS[:-1])}, got {value!r}")
    by = value.get("by", "worker")
    parts = by if isinstance(by, list) else [by]
    worker = False
    args: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    for part in parts:
        if part == "worker":
            worker = True
        elif isinstance(part, dict) and set(part) <= {"args", "meta"} and part:
            if "args" in part:
                args = _keys(part["args"], "chain.by.args")
            if "meta" in part:
                meta = _keys(part["meta"], "chain.by.meta")
        else:
            raise ValidationError("chain.by", f"expected 'worker', {{'args': keys}} or {{'meta': keys}}, got {part!r}")
    policies = {}
    for option in ("on_discarded", "on_cancelled"):
        policy = value.get(option, "ignore")
        if policy not in POLICIES:
            raise ValidationError(f"chain.{option}", f"expected one of {', '.join(POLICIES)}, got {policy!r}")
        policies[option] = policy
    if "wait" in value and "wait_snooze" in value:
        raise ValidationError("chain.wait", "wait is the old name of wait_snooze: give one of them")
    return Chain(worker, args, meta, policies["on_discarded"], policies["on_cancelled"],
                 hold_snooze=_positive(value.get("hold_snooze", 60), "hold_snooze"),
                 wait_sleep=_positive(value.get("wait_sleep", 1000), "wait_sleep", 0),
                 wait_retry=_positive(value.get("wait_retry", 10), "wait_retry", 0),
                 wait_snooze=_positive(value.get("wait_snooze", value.get("wait", 5)), "wait_snooze"))


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # run | halt | snooze | check (look again after wait_sleep)
    seconds: int = 0  # for snooze


def decide(chain: Chain, upstream: tuple[str, datetime | None] | None, now: datetime | None = None) -> Decision:
    """What a job does, from its upstream's state and scheduled_at (None: no upstream left)."""
    if upstream is None:
        return Decision("run")
    state, scheduled_at = upstream
    if state == "completed":
        return Decision("run")
    for failed, policy in (("discarded", chain.on_discarded), ("cancelled", chain.on_cancelled)):
        if state == failed:
            if policy == "ignore":
                return Decision("run")
            return Decision("halt") if policy == "halt" else Decision("snooze", chain.hold_snooze)
    if state in ("executing", "available"):
        return Decision("check")
    if state in ("scheduled", "retryable") and scheduled_at is not None:
        now = now or datetime.now(timezone.utc)
        return Decision("snooze", max(1, math.ceil((scheduled_at - now).total_seconds())))
    return Decision("snooze", chain.wait_snooze)  # suspended, or a state this version does not know


@dataclass(frozen=True, slots=True)
class ChainWait:
    """The outcome of a chain wait: back to `scheduled` in `seconds`, as if never fetched."""

    seconds: int
