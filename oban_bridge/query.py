"""Filters over `oban_jobs` for the CLI and scripts (the Python twin of `Oban.Job.query/1`).

Every column name comes from a fixed set and is quoted; every value is a parameter. `args` and
`meta` filters are JSONB containment, as in Elixir.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from . import jsonc
from .errors import ValidationError
from .job import STATES

ORDERS = ("id", "inserted_at", "scheduled_at", "attempted_at", "priority", "queue", "worker", "state")


def parse_pair(text: str, option: str) -> tuple[str, Any]:
    """`key=value`; the value is JSON when it parses (`n=1`, `ok=true`), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValidationError(option, f"expected KEY=VALUE, got {text!r}")
    try:
        value = jsonc.loads(raw)
    except jsonc.JSONDecodeError:
        value = raw
    return key, value


@dataclass(slots=True)
class JobFilter:
    ids: Sequence[int] = ()
    states: Sequence[str] = ()
    queues: Sequence[str] = ()
    workers: Sequence[str] = ()
    tags: Sequence[str] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for state in self.states:
            if state not in STATES:
                raise ValidationError("state", f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        for job_id in self.ids:
            if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
                raise ValidationError("id", f"expected a positive job id, got {job_id!r}")

    @property
    def empty(self) -> bool:
        return not (self.ids or self.states or self.queues or self.workers or self.tags or self.meta or self.args)

    def where(self, prefix: str, *, extra: sql.Composable | None = None) -> tuple[sql.Composable, list[Any]]:
        parts: list[sql.Composable] = []
        params: list[Any] = []
        if self.ids:
            parts.append(sql.SQL("id = ANY(%s::bigint[])"))
            params.append(list(self.ids))
        if self.states:
            parts.append(sql.SQL("state = ANY(%s::{}.oban_job_state[])").format(sql.Identifier(prefix)))
            params.append(list(self.states))
        if self.queues:
            parts.append(sql.SQL("queue = ANY(%s::text[])"))
            params.append(list(self.queues))
        if self.workers:
            parts.append(sql.SQL("worker = ANY(%s::text[])"))
            params.append([w.removeprefix("Elixir.") for w in self.workers])
        if self.tags:
            parts.append(sql.SQL("tags @> %s::text[]"))
            params.append([t.strip().lower() for t in self.tags])
        for column, value in (("meta", self.meta), ("args", self.args)):
            if value:
                parts.append(sql.SQL("{} @> %s::jsonb").format(sql.Identifier(column)))
                params.append(jsonc.dumps(value).decode())
        if extra is not None:
            parts.append(extra)
        if not parts:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(parts), params


def order_by(order: str) -> sql.Composable:
    """`id`, `-inserted_at`…: a column from ORDERS, `-` for descending."""
    column = order.removeprefix("-")
    if column not in ORDERS:
        raise ValidationError("order", f"expected one of {', '.join(ORDERS)} (prefix - for descending), got {order!r}")
    direction = sql.SQL("DESC") if order.startswith("-") else sql.SQL("ASC")
    return sql.SQL("{} {}, id {}").format(sql.Identifier(column), direction, direction)
