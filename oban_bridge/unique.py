"""Oban's unique jobs: options, the conflict query, and `replace` (lib/oban/job.ex and
`insert_unique/3` in lib/oban/engines/basic.ex).

A unique job is inserted only when no job in `states`, inserted (or scheduled) within `period`,
matches on `fields` — `args`/`meta` compared by JSONB containment, restricted to `keys` when
given. On a match the existing job comes back flagged as a conflict, after `replace` has updated
the fields listed for its state.

Locking differs from Elixir by necessity. Elixir serialises inserters with
`pg_try_advisory_xact_lock(phash2(prefix) + phash2([keys, states, query]))`; the second term hashes
an Ecto query struct holding a closure, which nothing outside the BEAM can reproduce. oban_bridge
takes its own lock instead (two int4 keys, a key space Elixir's single bigint key never touches) and
closes the cross-language window after commit; see `insert.settle_plan` and README "Unique jobs".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields as dataclass_fields
from typing import Any

from . import jsonc
from .errors import ValidationError

ALL_STATES = ("suspended", "scheduled", "available", "executing", "retryable", "completed", "discarded", "cancelled")

# Oban.Job.unique_states/1
STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ALL_STATES,
    "incomplete": ("suspended", "available", "scheduled", "executing", "retryable"),
    "scheduled": ("scheduled",),
    "successful": ("suspended", "available", "scheduled", "executing", "retryable", "completed"),
}

UNIQUE_FIELDS = ("args", "meta", "queue", "worker")
TIMESTAMPS = ("inserted_at", "scheduled_at")
REPLACEABLE = ("args", "max_attempts", "meta", "priority", "queue", "scheduled_at", "tags", "worker")

# Oban.Period time units, for periods given as (amount, unit) like Elixir's {1, :hour}.
_UNITS = {
    "second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
    "day": 86400, "days": 86400, "week": 604800, "weeks": 604800,
}  # fmt: skip

INFINITY = "infinity"


DEFAULT_FIELDS = ("args", "queue", "worker")


@dataclass(frozen=True, slots=True)
class Unique:
    fields: tuple[str, ...] = DEFAULT_FIELDS
    keys: tuple[str, ...] = ()
    period: int | None = 60  # seconds; None means :infinity
    states: tuple[str, ...] = STATE_GROUPS["successful"]
    timestamp: str = "inserted_at"


# {state: [fields]}: what a conflict updates on the existing job, per the existing job's state.
Replace = dict[str, tuple[str, ...]]


def _period(value: Any) -> int | None:
    if value in (INFINITY, "infinity", math.inf) or value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        amount, unit = value
        if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0 and unit in _UNITS:
            return amount * _UNITS[unit]
        raise ValidationError(
            "unique.period", f"expected a positive amount and a unit in {sorted(_UNITS)}, got {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError("unique.period", f"expected a positive integer or 'infinity', got {value!r}")
    return value


def _names(value: Any, option: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(option, f"expected a list of names, got {value!r}")
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise ValidationError(option, f"expected a list of names, got {value!r}")
    return out


def normalize_unique(value: Any) -> Unique | None:
    """`unique=True` (period infinity), a mapping of options, a `Unique`, or None/False."""
    if value is None or value is False:
        return None
    if isinstance(value, Unique):
        value = {f.name: getattr(value, f.name) for f in dataclass_fields(value)}  # re-validate
    if value is True:
        return Unique(period=None)
    if not isinstance(value, Mapping):
        raise ValidationError("unique", f"expected True or a mapping of options, got {value!r}")
    if not value:
        raise ValidationError("unique", "an empty mapping isn't allowed, use True")
    unknown = set(value) - {"fields", "keys", "period", "states", "timestamp"}
    if unknown:
        raise ValidationError("unique", f"unknown option {sorted(unknown)[0]!r}")

    fields = _names(value.get("fields", DEFAULT_FIELDS), "unique.fields")
    if not fields or any(f not in UNIQUE_FIELDS for f in fields):
        raise ValidationError("unique.fields", f"expected fields among {list(UNIQUE_FIELDS)}, got {list(fields)}")
    keys = _names(value.get("keys", ()), "unique.keys")
    if keys and not {"args", "meta"} & set(fields):
        raise ValidationError("unique.keys", "using keys expects fields to contain args or meta")

    states_value = value.get("states", "successful")
    if isinstance(states_value, str):
        if states_value not in STATE_GROUPS:
            raise ValidationError("unique.states", f"expected a group in {sorted(STATE_GROUPS)} or a list of states, got {states_value!r}")
        states = STATE_GROUPS[states_value]
    else:
        states = _names(states_value, "unique.states")
        bad = [s for s in states if s not in ALL_STATES]
        if not states or bad:
            raise ValidationError("unique.states", f"unknown state {bad[0] if bad else '(none given)'!r}; expected states among {list(ALL_STATES)}")

    timestamp = value.get("timestamp", "inserted_at")
    if timestamp not in TIMESTAMPS:
        raise ValidationError("unique.timestamp", f"expected one of {list(TIMESTAMPS)}, got {timestamp!r}")

    return Unique(
        fields=fields,
        keys=keys,
        period=_period(value.get("period", 60)),
        states=states,
        timestamp=timestamp,
    )


def normalize_replace(value: Any) -> Replace | None:
    """`replace=["args"]` (every state) or `{"available": ["args", "priority"], ...}`.

    Mirrors `put_replace/3` and `validate_replace/1` in lib/oban/job.ex.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        out: Replace = {}
        for state, fields in value.items():
            if state not in ALL_STATES:
                raise ValidationError("replace", f"has an invalid state: {state!r}")
            out[state] = _replace_fields(fields)
        return out
    fields = _replace_fields(value)
    return {state: fields for state in ALL_STATES}


def _replace_fields(value: Any) -> tuple[str, ...]:
    fields = _names(value, "replace")
    for f in fields:
        if f not in REPLACEABLE:
            raise ValidationError("replace", f"has an invalid field: {f!r}")
    return fields


# ---------------------------------------------------------------------------------------------
# SQL. Columns come from the validated option sets above and are quoted as identifiers; every
# value is a parameter.

from psycopg import sql  # noqa: E402

import orjson  # noqa: E402


def match_values(job: Any, unique: Unique) -> dict[str, Any]:
    """The value each unique field is compared with (basic.ex unique_map_values/3)."""
    out: dict[str, Any] = {}
    for name in unique.fields:
        value = getattr(job, name)
        if name in ("args", "meta") and unique.keys:
            value = {k: value[k] for k in unique.keys if k in value}
        out[name] = value
    return out


def lock_key(prefix: str, unique: Unique, values: Mapping[str, Any]) -> str:
    return orjson.dumps(
        [prefix, unique.keys, unique.states, values], option=orjson.OPT_SORT_KEYS
    ).decode()


def conflict_query(
    prefix: str, unique: Unique, values: Mapping[str, Any], *, exclude_id: int | None = None
) -> tuple[sql.Composed, list[Any]]:
    """`SELECT` the first job that makes `values` a duplicate (basic.ex unique_query/1)."""
    table = sql.SQL("{}.oban_jobs").format(sql.Identifier(prefix))
    enum = sql.SQL("{}.oban_job_state[]").format(sql.Identifier(prefix))
    where: list[sql.Composable] = [sql.SQL("state = ANY(%s::{})").format(enum)]
    params: list[Any] = [list(unique.states)]
    if unique.period is not None:
        where.append(
            sql.SQL("{} >= timezone('UTC', now()) - make_interval(secs => %s)").format(
                sql.Identifier(unique.timestamp)
            )
        )
        params.append(unique.period)
    for name, value in values.items():
        column = sql.Identifier(name)
        if name in ("args", "meta"):
            encoded = jsonc.dumps(value).decode()
            if not value:
                where.append(sql.SQL("{} <@ %s::jsonb").format(column))
                params.append(encoded)
            elif not unique.keys:
                where.append(sql.SQL("{0} @> %s::jsonb AND {0} <@ %s::jsonb").format(column))
                params += [encoded, encoded]
            else:
                where.append(sql.SQL("{} @> %s::jsonb").format(column))
                params.append(encoded)
        else:
            where.append(sql.SQL("{} = %s").format(column))
            params.append(value)
    order = sql.SQL("")
    if exclude_id is not None:
        where.append(sql.SQL("id <> %s"))
        params.append(exclude_id)
        order = sql.SQL(" ORDER BY id")
    query = sql.SQL("SELECT * FROM {} WHERE {}{} LIMIT 1").format(
        table, sql.SQL(" AND ").join(where), order
    )
    return query, params


def replace_query(prefix: str, job_id: int, changes: Mapping[str, Any]) -> tuple[sql.Composed, list[Any]]:
    """`UPDATE` the existing job with the replaced fields (basic.ex resolve_conflict/4)."""
    sets: list[sql.Composable] = []
    params: list[Any] = []
    for name, value in changes.items():
        if name in ("args", "meta"):
            sets.append(sql.SQL("{} = %s::jsonb").format(sql.Identifier(name)))
            params.append(jsonc.dumps(value).decode())
        else:
            sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(value)
    params.append(job_id)
    query = sql.SQL("UPDATE {}.oban_jobs SET {} WHERE id = %s RETURNING *").format(
        sql.Identifier(prefix), sql.SQL(", ").join(sets)
    )
    return query, params
