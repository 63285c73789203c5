"""Queue options in Oban Pro's vocabulary: `local_limit`, `global_limit`, `rate_limit` and
`partition` (Pro's Smart engine, lib/oban/pro/engines/smart.ex), parsed and checked once.

How they are enforced is in `queries/limited_fetch.sql` and the README's "Global and rate
limits": through PostgreSQL only, exact at every instant, and without head-of-line blocking
between partitions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# A rate limit is checked over this many sub-windows of its period: the ledger keeps one count per
# sub-window, so its size does not grow with `allowed` (queries/limited_fetch.sql).
RATE_BUCKETS = 20

_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_PERIOD_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)?\s*([a-z]+)?\s*")
_KEY = re.compile(r"[^\x00]{1,255}")


@dataclass(frozen=True, slots=True)
class Partition:
    """Pro's `partition: [fields: [:worker, :args], keys: [...]]`: by worker, by args (all of them,
    or only `keys`), or both."""

    worker: bool = False
    args: bool = False
    keys: tuple[str, ...] = ()

    def as_meta(self) -> dict[str, Any]:
        fields = (["worker"] if self.worker else []) + (["args"] if self.args else [])
        return {"fields": fields, "keys": list(self.keys)}

    def describe(self) -> str:
        parts = (["worker"] if self.worker else []) + (
            [f"args.{k}" for k in self.keys] if self.keys else (["args"] if self.args else []))
        return "+".join(parts)


@dataclass(frozen=True, slots=True)
class RateLimit:
    allowed: int
    period: float  # seconds

    @property
    def period_ms(self) -> int:
        return max(RATE_BUCKETS, round(self.period * 1000))

    @property
    def bucket_ms(self) -> int:
        return self.period_ms // RATE_BUCKETS


@dataclass(frozen=True, slots=True)
class QueueOptions:
    local_limit: int
    global_limit: int | None = None
    rate_limit: RateLimit | None = None
    partition: Partition | None = field(default=None)

    @property
    def limited(self) -> bool:
        """Whether fetches must coordinate with the other nodes (queries/limited_fetch.sql)."""
        return self.global_limit is not None or self.rate_limit is not None

    def describe(self) -> str:
        """The CLI's own syntax for these options (`-q`), for logs and `queues`."""
        parts = [f"local={self.local_limit}"]
        if self.global_limit is not None:
            parts.append(f"global={self.global_limit}")
        if self.rate_limit is not None:
            parts.append(f"rate={self.rate_limit.allowed}/{self.rate_limit.period:g}s")
        if self.partition is not None:
            parts.append(f"partition={self.partition.describe()}")
        return ",".join(parts)


# Limits travel in gossip and Oban Web's checks as JSON integers and are compared in SQL as
# integers: past int4 a "limit" means nothing a database or a dashboard can hold.
LIMIT_MAX = 2_147_483_647


def _positive_int(queue: str, what: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"queue {queue!r}: {what} must be a positive integer, got {value!r}")
    if value > LIMIT_MAX:
        raise ValueError(f"queue {queue!r}: {what} must be at most {LIMIT_MAX:,}, got {value!r}")
    return value


def parse_period(queue: str, value: Any) -> float:
    """Pro's `period: 60` or `period: {1, :minute}`; also `(1, "minute")`, `"10s"`, `"1m"`."""
    seconds: float
    if isinstance(value, (list, tuple)) and len(value) == 2:
        count, unit = value
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not isinstance(unit, str) \
                or unit.strip().lower().lstrip(":") not in _UNITS:
            raise ValueError(f"queue {queue!r}: rate period {value!r}: expected (N, unit) with a unit "
                             f"among {', '.join(sorted(set(_UNITS)))}")
        seconds = count * _UNITS[unit.strip().lower().lstrip(":")]
    elif isinstance(value, str):
        m = _PERIOD_TEXT.fullmatch(value.lower())
        if not m or not (m.group(1) or m.group(2)) or (m.group(2) and m.group(2) not in _UNITS):
            raise ValueError(f"queue {queue!r}: rate period {value!r}: expected seconds or N with a unit, "
                             f"e.g. 10s, 1m, 500ms, 1h")
        seconds = float(m.group(1) or 1) * _UNITS[m.group(2) or "s"]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"queue {queue!r}: rate period {value!r}: expected seconds, (N, unit) or e.g. '10s'")
    if not math.isfinite(seconds) or not 0.02 <= seconds <= 86400 * 7:
        raise ValueError(f"queue {queue!r}: rate period {value!r} must lie between 20 ms and 7 days")
    return seconds


def parse_partition(queue: str, value: Any) -> Partition:
    """Pro's `[fields: [:worker, :args], keys: [:account_id]]` as a mapping, Pro's shorthand list
    (`["worker", {"args": "account_id"}]`), or the CLI's `worker+args.account_id`."""
    worker = args = False
    keys: list[str] = []
    if isinstance(value, str):
        for part in value.split("+"):
            part = part.strip()
            if part == "worker":
                worker = True
            elif part == "args":
                args = True
            elif part.startswith("args.") and len(part) > 5:
                args = True
                keys.append(part[5:])
            else:
                raise ValueError(f"queue {queue!r}: partition {value!r}: expected worker, args or args.KEY "
                                 f"joined by '+', e.g. worker+args.account_id")
    elif isinstance(value, Mapping):
        unknown = set(value) - {"fields", "keys"}
        if unknown:
            raise ValueError(f"queue {queue!r}: partition has unknown option(s) {sorted(unknown)}; "
                             f"expected fields and keys")
        fields = value.get("fields", ["args"] if value.get("keys") else [])
        if isinstance(fields, str) or not isinstance(fields, Sequence) or not fields \
                or any(f not in ("worker", "args") for f in fields):
            raise ValueError(f"queue {queue!r}: partition fields {fields!r}: expected a list of worker and/or args")
        worker, args = "worker" in fields, "args" in fields
        raw = value.get("keys", [])
        if isinstance(raw, str) or not isinstance(raw, Sequence):
            raise ValueError(f"queue {queue!r}: partition keys {raw!r}: expected a list of args keys")
        keys = list(raw)
        if keys and not args:
            raise ValueError(f"queue {queue!r}: partition keys need 'args' among the fields")
    elif isinstance(value, Sequence):
        for item in value:
            if item == "worker":
                worker = True
            elif item == "args":
                args = True
            elif isinstance(item, Mapping) and set(item) == {"args"}:
                args = True
                more = item["args"]
                keys.extend([more] if isinstance(more, str) else list(more))
            else:
                raise ValueError(f"queue {queue!r}: partition item {item!r}: expected 'worker', 'args' "
                                 f"or {{'args': KEY}}")
    else:
        raise ValueError(f"queue {queue!r}: partition {value!r}: expected {{'fields': [...], 'keys': [...]}} "
                         f"or e.g. 'worker+args.account_id'")
    for key in keys:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"queue {queue!r}: partition key {key!r}: expected a non-empty string")
    if len(set(keys)) != len(keys) or len(keys) > 8:
        raise ValueError(f"queue {queue!r}: partition keys {keys!r}: at most 8, each once")
    if not worker and not args:
        raise ValueError(f"queue {queue!r}: partition needs worker and/or args")
    return Partition(worker=worker, args=args, keys=tuple(keys))


def _limit_and_partition(queue: str, what: str, value: Any, allowed_keys: set[str]) -> tuple[Any, Any]:
    """A Pro limit option is a number or a mapping with `allowed` and maybe `partition`."""
    if isinstance(value, Mapping):
        unknown = set(value) - allowed_keys
        if unknown:
            raise ValueError(f"queue {queue!r}: {what} has unknown option(s) {sorted(unknown)}; "
                             f"expected {', '.join(sorted(allowed_keys))}")
        if "allowed" not in value:
            raise ValueError(f"queue {queue!r}: {what} needs 'allowed'")
        return value, value.get("partition")
    return {"allowed": value}, None


def queue_options(queue: str, value: Any) -> QueueOptions:
    """A queue's options from the API or `[tool.oban_bridge]`: a limit, a `QueueOptions`, or a
    mapping with Pro's keys (`limit` is accepted for `local_limit`)."""
    if isinstance(value, QueueOptions):
        return value
    if not isinstance(value, Mapping):
        return QueueOptions(local_limit=_positive_int(queue, "the limit", value))
    unknown = set(value) - {"limit", "local_limit", "global_limit", "rate_limit", "partition"}
    if unknown:
        raise ValueError(f"queue {queue!r}: unknown option(s) {sorted(unknown)}; expected local_limit, "
                         f"global_limit, rate_limit and partition")
    if "limit" in value and "local_limit" in value:
        raise ValueError(f"queue {queue!r}: give limit or local_limit, not both")
    partitions: list[Partition] = []
    if value.get("partition") is not None:
        partitions.append(parse_partition(queue, value["partition"]))
    global_limit = None
    if value.get("global_limit") is not None:
        spec, part = _limit_and_partition(queue, "global_limit", value["global_limit"], {"allowed", "partition"})
        global_limit = _positive_int(queue, "global_limit", spec["allowed"])
        if part is not None:
            partitions.append(parse_partition(queue, part))
    rate = None
    if value.get("rate_limit") is not None:
        spec, part = _limit_and_partition(queue, "rate_limit", value["rate_limit"],
                                          {"allowed", "period", "partition"})
        if not isinstance(value["rate_limit"], Mapping) or "period" not in spec:
            raise ValueError(f"queue {queue!r}: rate_limit needs allowed and period, "
                             f"e.g. {{'allowed': 90, 'period': 10}}")
        rate = RateLimit(_positive_int(queue, "rate_limit allowed", spec["allowed"]),
                         parse_period(queue, spec["period"]))
        if part is not None:
            partitions.append(parse_partition(queue, part))
    if any(p != partitions[0] for p in partitions):
        raise ValueError(f"queue {queue!r}: one partition per queue: the global and rate limits must "
                         f"partition the same way")
    partition = partitions[0] if partitions else None
    if partition is not None and global_limit is None and rate is None:
        raise ValueError(f"queue {queue!r}: partition applies to global_limit or rate_limit; give one of them")
    local = value.get("local_limit", value.get("limit"))
    if local is None:
        # Pro requires local_limit beside a global one; here it defaults to what the node may run
        # at most anyway (the global limit), else Oban's usual 10.
        local = global_limit if global_limit is not None and partition is None else 10
    return QueueOptions(local_limit=_positive_int(queue, "local_limit", local), global_limit=global_limit,
                        rate_limit=rate, partition=partition)


def parse_queue_text(queue: str, options: Sequence[str]) -> QueueOptions:
    """The CLI's `NAME:LIMIT` or `NAME:local=10,global=20,rate=90/10s,partition=args.profile`:
    `options` are the comma-separated parts that belong to one queue."""
    if len(options) == 1 and "=" not in options[0]:
        return queue_options(queue, options[0].strip())
    spec: dict[str, Any] = {}
    names = {"local": "local_limit", "limit": "local_limit", "global": "global_limit",
             "rate": "rate_limit", "partition": "partition"}
    for part in options:
        key, eq, text = part.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or key not in names:
            raise ValueError(f"queue {queue!r}: {part.strip()!r}: expected local=N, global=N, rate=N/PERIOD "
                             f"or partition=worker|args|args.KEY")
        name = names[key]
        if name in spec:
            raise ValueError(f"queue {queue!r}: {key} is given twice")
        if name == "rate_limit":
            allowed, slash, period = text.partition("/")
            if not slash:
                raise ValueError(f"queue {queue!r}: rate={text!r}: expected N/PERIOD, e.g. 90/10s")
            spec[name] = {"allowed": allowed.strip(), "period": period.strip()}
        else:
            spec[name] = text
    return queue_options(queue, spec)
