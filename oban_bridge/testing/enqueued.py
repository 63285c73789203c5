"""The filters of `all_enqueued`, `assert_enqueued` and `refute_enqueued` (lib/oban/testing.ex).

Only enqueued jobs count — available, scheduled or suspended — newest first. Every filter given
must match: columns by equality, timestamps within a delta either side (default 1 s; `delta=`
for all of them, or one field's as `scheduled_at=(when, 10)`, Oban's `{when, delta: 10}`), and
`args`/`meta` by containment — the job's may hold more keys, nested maps are compared the same
way, and `"_"` (Oban's `:_`) or `unittest.mock.ANY` as a value asks only that the key exists.
Other values compare as Elixir's `==` does: `True` is not `1`, `1` is `1.0`, and `None` matches a
missing key (`Map.get(data, key) == nil`).
Expected values go through JSON first, as Oban's do, so `{"ids": (2, 3)}` matches `{"ids": [2, 3]}` and `{1: …}` matches `{"1": …}`.
"""

from __future__ import annotations

import pprint
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from .. import jsonc
from ..db import Plan, Query, prefixed
from ..job import Job, to_db_timestamp, utc_now, worker_name

TIMESTAMPS = ("scheduled_at", "inserted_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at")
COLUMNS = ("id", "worker", "queue", "state", "priority", "attempt", "max_attempts", "tags", "attempted_by")
JSON_FIELDS = ("args", "meta")
FILTERS = (*COLUMNS, *JSON_FIELDS, "errors", *TIMESTAMPS, "scheduled_in")

WILDCARD = "_"


@dataclass(slots=True)
class Filters:
    given: dict[str, Any]  # as the caller gave them, for the failure message
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    errors: list[Any] | None = None  # compared whole, as Oban's `where(errors: ^value)`

    def shown(self) -> str:
        return pprint.pformat(self.given, sort_dicts=False)

    def keys(self) -> list[str]:
        """The job fields the failure message shows for each enqueued job."""
        return ["scheduled_at" if key == "scheduled_in" else key for key in self.given if key != "delta"]


def _recode(value: Any) -> Any:
    """Through JSON as Oban's json_recode/1, keeping wildcards in place."""
    if value is mock.ANY:
        return value
    if isinstance(value, Mapping):
        return {_key(k): _recode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recode(v) for v in value]
    return jsonc.loads(jsonc.dumps(value))


def _key(key: Any) -> str:
    """A JSON object key: Elixir's encoder writes atom and integer keys as strings."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"args/meta filter keys must be strings, got {key!r}")


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected seconds (a number) or a timedelta, got {value!r}")
    return float(value)


def parse(filters: Mapping[str, Any]) -> Filters:
    """Check the filters once, naming an unknown one, and split them into SQL parameters and the
    containment checks made in Python."""
    unknown = sorted(set(filters) - set(FILTERS) - {"delta"})
    if unknown:
        raise TypeError(f"unknown job filter(s) {', '.join(unknown)}: expected any of {', '.join(FILTERS)}, delta")
    given = dict(filters)
    out = Filters(given, params={key: None for key in (*COLUMNS, *TIMESTAMPS)})
    delta = timedelta(seconds=_seconds(given.get("delta", 1), "delta"))
    out.params.update({f"{key}_delta": delta for key in TIMESTAMPS})
    for key, value in given.items():
        if key == "delta":
            continue
        if key in JSON_FIELDS:
            if not isinstance(value, Mapping):
                raise TypeError(f"{key}: expected a mapping to look for in the job's {key}, got {value!r}")
            out.json[key] = _recode(value)
        elif key == "worker":
            out.params["worker"] = worker_name(value)
        elif key in ("tags", "attempted_by"):
            if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
                raise TypeError(f"{key}: expected a list of strings, got {value!r}")
            out.params[key] = list(value)
        elif key == "errors":
            if not isinstance(value, (list, tuple)) or not all(isinstance(item, Mapping) for item in value):
                raise TypeError(f"errors: expected a list of error maps, got {value!r}")
            out.errors = _recode(value)
        elif key in ("queue", "state"):
            out.params[key] = str(value)
        elif key == "scheduled_in":
            value, own = _with_delta(key, value)
            out.params["scheduled_at"] = to_db_timestamp(utc_now() + timedelta(seconds=_seconds(value, key)))
            if own is not None:
                out.params["scheduled_at_delta"] = own
        elif key in TIMESTAMPS:
            value, own = _with_delta(key, value)
            if not isinstance(value, datetime):
                raise TypeError(f"{key}: expected a datetime or (datetime, delta seconds), got {value!r}")
            out.params[key] = to_db_timestamp(value)
            if own is not None:
                out.params[f"{key}_delta"] = own
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{key}: expected an integer, got {value!r}")
            out.params[key] = value
    if "scheduled_in" in given and "scheduled_at" in given:
        raise TypeError("give either scheduled_at or scheduled_in, not both")
    return out


def _with_delta(key: str, value: Any) -> tuple[Any, timedelta | None]:
    """`(when, delta)`: this field's own delta, as Oban's `{when, delta: seconds}`."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TypeError(f"{key}: expected a value or (value, delta seconds), got {value!r}")
        return value[0], timedelta(seconds=_seconds(value[1], f"{key} delta"))
    return value, None


def required(filters: Mapping[str, Any], name: str) -> None:
    """assert_enqueued/refute_enqueued take at least one filter (Oban's `[_ | _] = opts`): an
    empty one would assert that anything at all is enqueued."""
    if not any(key != "delta" for key in filters):
        raise TypeError(f"{name} needs at least one job filter (worker=, queue=, args=, …)")


def enqueued_plan(prefix: str, filters: Filters) -> Plan[list[Job]]:
    rows = yield Query(prefixed("testing_enqueued", prefix), filters.params, rows="tuple")
    jobs = [Job.from_tuple(row) for row in rows]
    return [job for job in jobs
            if all(_contains(want, getattr(job, key)) for key, want in filters.json.items())
            and (filters.errors is None or elixir_equal(job.errors, filters.errors))]


def everything() -> Filters:
    return parse({})


def _contains(want: Mapping[str, Any], data: Any) -> bool:
    """Oban.Testing contains?/2: a wildcard asks that the key exists, a map is contained in turn,
    any other value must equal `Map.get(data, key)` (so None matches a missing key)."""
    if not isinstance(data, Mapping):
        return False
    for key, value in want.items():
        if value is mock.ANY or (isinstance(value, str) and value == WILDCARD):
            if key not in data:
                return False
        elif isinstance(value, Mapping):
            sub = data.get(key)
            if sub is None or not _contains(value, sub):
                return False
        elif not elixir_equal(data.get(key), value):
            return False
    return True


def elixir_equal(a: Any, b: Any) -> bool:
    """Elixir's `==` on decoded JSON: booleans are atoms (`true != 1`), numbers compare by value
    (`1 == 1.0`), lists and maps element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(elixir_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(elixir_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def describe(jobs: list[Job], filters: Filters) -> str:
    """The enqueued jobs, showing only the fields the filters name (Oban's available_jobs/2)."""
    keys = filters.keys() or ["worker", "queue", "args"]
    shown = [{key: getattr(job, key) for key in keys} for job in jobs]
    return pprint.pformat(shown, sort_dicts=False)


def expected_message(filters: Filters, found: list[Job]) -> str:
    return (f"Expected a job matching:\n\n{filters.shown()}\n\nto be enqueued. Instead found:\n\n"
            f"{describe(found, filters)}\n")


def expected_within(filters: Filters, timeout: float) -> str:
    return f"Expected a job matching:\n\n{filters.shown()}\n\nto be enqueued within {timeout:g}s\n"


def refuted_message(filters: Filters, matched: list[Job], timeout: float | None = None) -> str:
    within = f" within {timeout:g}s" if timeout else ""
    return (f"Expected no jobs matching:\n\n{filters.shown()}\n\nto be enqueued{within}. Found:\n\n"
            f"{describe(matched, filters)}\n")
