"""Chains (Oban.Pro.Worker `chain:`): jobs of one partition run strictly in insertion order,
whatever their scheduling, retries or snoozes.

Storage and mechanism (Pro's are not public): a chained job carries `meta.chain_id`, a digest of
its partition (`by` worker, args keys and/or meta keys). Before it runs, the executor looks at
earlier jobs (lower ids) of the partition: while one is unfinished, or cancelled/discarded under
`hold`, the job snoozes for `wait` seconds (a snooze costs no attempt); under `halt` it cancels
itself; under `ignore` (the default) a cancelled or discarded predecessor counts as done.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ValidationError

META_KEY = "chain_id"
POLICIES = ("ignore", "hold", "halt")
UNFINISHED = ("available", "scheduled", "executing", "retryable", "suspended")


@dataclass(frozen=True, slots=True)
class Chain:
    worker: bool = True
    args: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    on_discarded: str = "ignore"
    on_cancelled: str = "ignore"
    wait: int = 1

    def chain_id(self, worker: str, args: dict[str, Any], meta: dict[str, Any]) -> str:
        key = [worker if self.worker else None,
               {k: args.get(k) for k in self.args}, {k: meta.get(k) for k in self.meta}]
        return hashlib.blake2b(orjson.dumps(key, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


def _keys(value: Any, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(option, f"expected a key or a list of keys, got {value!r}")


def parse(value: Any) -> Chain | None:
    """`True`, or `{"by": ..., "on_discarded": ..., "on_cancelled": ..., "wait": s}` where `by`
    is `"worker"`, `{"args": keys}`, `{"meta": keys}` or a list mixing them."""
    if value is None or value is False:
        return None
    if value is True:
        return Chain()
    if not isinstance(value, dict) or set(value) - {"by", "on_discarded", "on_cancelled", "wait"}:
        raise ValidationError("chain", f"expected True or a mapping of by/on_discarded/on_cancelled/wait, got {value!r}")
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
    wait = value.get("wait", 1)
    if isinstance(wait, bool) or not isinstance(wait, int) or wait < 0:
        raise ValidationError("chain.wait", f"expected whole seconds, got {wait!r}")
    return Chain(worker, args, meta, policies["on_discarded"], policies["on_cancelled"], wait)


def decide(chain: Chain, states: set[str]) -> str:
    """`run`, `wait` or `halt`, from the states of the unfinished-or-failed predecessors."""
    if states & set(UNFINISHED):
        return "wait"
    for state, policy in (("discarded", chain.on_discarded), ("cancelled", chain.on_cancelled)):
        if state in states and policy != "ignore":
            return "wait" if policy == "hold" else "halt"
    return "run"
