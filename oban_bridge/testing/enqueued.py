"""The filters of `all_enqueued`, `assert_enqueued` and `refute_enqueued` (lib/oban/testing.ex).

Only enqueued jobs count — available, scheduled or suspended — newest first. Every filter given
must match: columns by equality, timestamps within `delta` seconds (default 1) either side, and
`args`/`meta` by containment — the job's may hold more keys, nested maps are compared the same
way, and `"_"` (Oban's `:_`) or `unittest.mock.ANY` as a value asks only that the key exists.
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
COLUMNS = ("id", "worker", "queue", "state", "priority", "attempt", "max_attempts", "tags")
JSON_FIELDS = ("args", "meta")
FILTERS = (*COLUMNS, *JSON_FIELDS, *TIMESTAMPS, "scheduled_in")

WILDCARD = "_"


@dataclass(slots=True)
class Filters:
    given: dict[str, Any]  # as the caller gave them, for the failure message
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)

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
    delta = _seconds(given.get("delta", 1), "delta")
    out.params["delta"] = timedelta(seconds=delta)
    for key, value in given.items():
        if key == "delta":
            continue
        if key in JSON_FIELDS:
            if not isinstance(value, Mapping):
                raise TypeError(f"{key}: expected a mapping to look for in the job's {key}, got {value!r}")
            out.json[key] = _recode(value)
        elif key == "worker":
            out.params["worker"] = worker_name(value)
        elif key == "tags":
            out.params["tags"] = [str(tag) for tag in value]
        elif key in ("queue", "state"):
            out.params[key] = str(value)
        elif key == "scheduled_in":
            out.params["scheduled_at"] = to_db_timestamp(utc_now() + timedelta(seconds=_seconds(value, key)))
        elif key in TIMESTAMPS:
            if not isinstance(value, datetime):
                raise TypeError(f"{key}: expected a datetime, got {value!r}")
            out.params[key] = to_db_timestamp(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{key}: expected an integer, got {value!r}")
            out.params[key] = value
    if "scheduled_in" in given and "scheduled_at" in given:
        raise TypeError("give either scheduled_at or scheduled_in, not both")
    return out


def enqueued_plan(prefix: str, filters: Filters) -> Plan[list[Job]]:
    rows = yield Query(prefixed("testing_enqueued", prefix), filters.params, rows="tuple")
    jobs = [Job.from_tuple(row) for row in rows]
    return [job for job in jobs if all(_contains(want, getattr(job, key)) for key, want in filters.json.items())]


def everything() -> Filters:
    return parse({})


def _contains(want: Mapping[str, Any], data: Any) -> bool:
    """Oban.Testing contains?/2: every expected key is in `data`, nested maps contained in turn."""
    if not isinstance(data, Mapping):
        return False
    for key, value in want.items():
        if key not in data:
            return False
        if value == WILDCARD or value is mock.ANY:
            continue
        if isinstance(value, Mapping):
            if data[key] is None or not _contains(value, data[key]):
                return False
        elif data[key] != value:
            return False
    return True


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
