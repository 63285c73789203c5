"""One `oban_jobs` row, and `Job.new`, the Python twin of `Oban.Job.new/2` (lib/oban/job.ex).

Options are validated and normalised here, before anything reaches the database, with the same
rules and defaults as Elixir: tags trimmed, downcased, de-duplicated; `scheduled_at` or
`schedule_in` makes a job `scheduled`; priority 0..9; max_attempts > 0; worker and queue 1..127
characters (the `worker_length`/`queue_length` checks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any


from . import jsonc
from .errors import ValidationError
from .unique import Replace, Unique, normalize_replace, normalize_unique

UTC = timezone.utc

STATES = (
    "available",
    "suspended",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)

_NAME_LIMIT = 127

# The columns of oban_jobs in table order (elixir_interop_fixtures/schema.sql).
COLUMNS = (
    "id", "state", "queue", "worker", "args", "errors", "attempt", "max_attempts", "inserted_at",
    "scheduled_at", "attempted_at", "completed_at", "attempted_by", "discarded_at", "priority",
    "tags", "meta", "cancelled_at",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Aware UTC. A naive datetime is taken to be UTC already, as Oban stores timestamps."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_db_timestamp(value: datetime) -> datetime:
    """Oban's columns are `timestamp without time zone` holding UTC."""
    return to_utc(value).replace(tzinfo=None)


def worker_name(worker: Any) -> str:
    """A worker is a string (any language's name for it) or a Python worker class/function.

    Python workers carry their registered name in `__oban_worker__`; anything else is named by
    its dotted path, as Elixir names a worker by its module (without the `Elixir.` prefix).
    """
    if isinstance(worker, str):
        # Oban.Worker.to_string/1 drops the module prefix: "Elixir.MyApp.W" is "MyApp.W".
        return worker.removeprefix("Elixir.")
    name = getattr(worker, "__oban_worker__", None)
    if isinstance(name, str):
        return name.removeprefix("Elixir.")
    module = getattr(worker, "__module__", None)
    qualname = getattr(worker, "__qualname__", None)
    if module and qualname:
        return f"{module}.{qualname}"
    raise ValidationError("worker", f"expected a string or a worker class, got {worker!r}")


def encode_json(value: Any, name: str) -> bytes:
    """JSON the way Jason would store it, or a clear error naming the option."""
    try:
        data = jsonc.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"not JSON encodable ({exc})") from None
    if b"\\u0000" in data:
        # PostgreSQL's jsonb cannot hold NUL characters; fail here, not halfway through a batch.
        raise ValidationError(name, "strings may not contain the NUL character (\\u0000)")
    if b"null" in data:
        # orjson writes NaN and ±inf as null; Jason refuses them, and a silent null is data lost.
        _refuse_non_finite(value, name)
    return data


def _refuse_non_finite(value: Any, name: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise ValidationError(name, f"{item!r} is not a JSON number (NaN and infinities cannot be stored)")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _as_dict(value: Mapping[str, Any] | None, field_name: str) -> dict[str, Any]:
    """args/meta: None is empty, a dict is kept as is (the JSON round trip copies it), any other
    Mapping becomes a dict, and anything else is rejected."""
    if value is None:
        return {}
    if type(value) is dict:
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, f"expected a JSON object (a mapping), got {type(value).__name__}")
    return dict(value)


def _check_name(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field_name, f"expected a string, got {type(value).__name__}")
    if not 0 < len(value) <= _NAME_LIMIT:
        raise ValidationError(field_name, f"must be 1 to {_NAME_LIMIT} characters, got {len(value)}")
    return value


_INT4_MAX = 2**31 - 1


def _check_int(value: Any, field_name: str, low: int, high: int | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, f"expected {what}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValidationError(field_name, f"expected {what}, got {value!r}")
    return value


def normalize_tags(tags: Iterable[Any] | None) -> list[str]:
    """lib/oban/job.ex `normalize_tags/1`: to_string, trim, downcase, drop empty, uniq."""
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise ValidationError("tags", f"expected a list of strings, got {tags!r}")
    seen: dict[str, None] = {}
    for tag in tags:
        # The column is Ecto's {:array, :string}: a number is not cast to a string, the job is invalid.
        if not isinstance(tag, str):
            raise ValidationError("tags", f"expected strings, got {tag!r}")
        # Elixir's String.trim/downcase are Unicode-aware, like str.strip/lower (not ASCII-only).
        text = tag.strip().lower()
        if text:
            seen.setdefault(text, None)
    return list(seen)


@dataclass(slots=True)
class Job:
    """A row of `oban_jobs`, column for column, plus Oban's virtual fields.

    Timestamps are aware UTC datetimes in Python and naive UTC in the table, as Ecto's
    `:utc_datetime_usec` stores them.
    """

    worker: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    state: str = "available"
    meta: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    priority: int = 0
    max_attempts: int = 20
    attempt: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    attempted_by: list[str] | None = None
    id: int | None = None
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    # Virtual, as in Oban.Job: not columns.
    conflict: bool = False
    unique: Unique | None = None
    replace: Replace | None = None
    changes: frozenset[str] = frozenset()
    # Set by the node running the job when it asks the job to stop (timeout, deadline, pkill,
    # shutdown): a plain-def job cannot be killed, so it should look here and return.
    stop_requested: str | None = field(default=None, repr=False, compare=False)
    # Oban.Job's unsaved_error, for after_process hooks of a failed attempt: {"kind", "reason",
    # "stacktrace"} (the exception and its traceback, or the Error's reason and None).
    unsaved_error: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """Whether the node asked this job to stop (its timeout passed, it was cancelled from Oban
        Web or the CLI, or the node is shutting down). Long `def` jobs should check it and return:
        Python cannot kill a thread, so the job keeps its slot until it does."""
        return self.stop_requested is not None

    def check_cancelled(self) -> None:
        """Raise `JobCancelledError` if the node asked this job to stop (see `cancelled`)."""
        if self.stop_requested is not None:
            from .errors import JobCancelledError

            raise JobCancelledError(self.stop_requested)

    @classmethod
    def new(
        cls,
        worker: Any,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        meta: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        priority: int | None = None,
        max_attempts: int = 20,
        scheduled_at: datetime | None = None,
        schedule_in: float | timedelta | None = None,
        unique: Any = None,
        replace: Any = None,
        state: str | None = None,
    ) -> Job:
        """Build a validated job ready for `insert`, like `Oban.Job.new(args, opts)`."""
        name = _check_name(worker_name(worker), "worker")
        args = _as_dict(args, "args")
        meta = _as_dict(meta, "meta")
        # Round-trip through JSON: rejects what cannot be stored, and gives the job its own copy
        # (Elixir maps are immutable; a caller's later mutation must not change a built job).
        args_dict = jsonc.loads(encode_json(args, "args"))
        meta_dict = jsonc.loads(encode_json(meta, "meta")) if meta else {}
        if type(queue) is not str or not 0 < len(queue) <= _NAME_LIMIT:
            _check_name(queue, "queue")
        if priority is not None:
            _check_int(priority, "priority", 0, 9, "an integer from 0 to 9")
        if type(max_attempts) is not int or not 1 <= max_attempts <= _INT4_MAX:
            _check_int(max_attempts, "max_attempts", 1, _INT4_MAX, "an integer from 1 to 2147483647 (the column is integer)")

        at: datetime | None = None
        if scheduled_at is not None:
            if schedule_in is not None:
                raise ValidationError("schedule_in", "give either scheduled_at or schedule_in, not both")
            if not isinstance(scheduled_at, datetime):
                raise ValidationError("scheduled_at", f"expected a datetime, got {scheduled_at!r}")
            at = to_utc(scheduled_at)
        elif schedule_in is not None:
            try:
                at = utc_now() + _schedule_delta(schedule_in)
            except OverflowError:
                raise ValidationError("schedule_in", f"{schedule_in!r} seconds is outside the years 1 to 9999") from None

        if state is None:
            # lib/oban/job.ex normalize_state/1: any scheduled_at makes the job scheduled; the
            # stager makes it available once due, as it would for an Elixir insert.
            state = "available" if at is None else "scheduled"
        elif state not in STATES:
            raise ValidationError("state", f"expected one of {', '.join(STATES)}, got {state!r}")

        tag_list = normalize_tags(tags) if tags else []
        replace_map = normalize_replace(replace)
        changes: frozenset[str] = frozenset()
        if replace_map is not None:
            # What Ecto's cast/3 would record as changes against Oban.Job's struct defaults: on a
            # unique conflict `replace` copies only these (basic.ex resolve_conflict/4).
            changes = frozenset(
                field_name
                for field_name, changed in (
                    ("worker", True),
                    ("args", True),
                    ("queue", queue != "default"),
                    ("meta", bool(meta_dict)),
                    ("tags", bool(tag_list)),
                    ("max_attempts", max_attempts != 20),
                    ("priority", priority is not None),
                    ("scheduled_at", at is not None),
                )
                if changed
            )
        return cls(
            worker=name,
            args=args_dict,
            queue=queue,
            state=state,
            meta=meta_dict,
            tags=tag_list,
            priority=0 if priority is None else priority,
            max_attempts=max_attempts,
            scheduled_at=at,
            unique=None if unique is None else normalize_unique(unique),
            replace=replace_map,
            changes=changes,
        )

    @classmethod
    def from_tuple(cls, row: tuple[Any, ...]) -> Job:
        """A row in `COLUMNS` order (the producer's fetch, queries/ack_fetch_jobs.sql): the hot
        path, so no dict and no helper calls; its timestamps already arrive aware, in UTC."""
        (id_, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
         attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta, cancelled_at) = row
        return cls(
            worker=worker, args=args, queue=queue, state=state, meta=meta or {}, tags=tags or [],
            priority=priority, max_attempts=max_attempts, attempt=attempt, errors=errors or [],
            attempted_by=attempted_by, id=id_, inserted_at=inserted_at, scheduled_at=scheduled_at,
            attempted_at=attempted_at, completed_at=completed_at, discarded_at=discarded_at,
            cancelled_at=cancelled_at,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, conflict: bool = False) -> Job:
        def ts(key: str) -> datetime | None:
            value = row.get(key)
            return None if value is None else to_utc(value)

        return cls(
            id=row["id"],
            state=row["state"],
            queue=row["queue"],
            worker=row["worker"],
            args=row["args"],
            errors=list(row["errors"] or []),
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            inserted_at=ts("inserted_at"),
            scheduled_at=ts("scheduled_at"),
            attempted_at=ts("attempted_at"),
            completed_at=ts("completed_at"),
            attempted_by=row.get("attempted_by"),
            discarded_at=ts("discarded_at"),
            priority=row["priority"],
            tags=list(row.get("tags") or []),
            meta=row.get("meta") or {},
            cancelled_at=ts("cancelled_at"),
            conflict=conflict,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with timestamps in ISO 8601 UTC and Oban's `conflict?` as `conflict`."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "id": self.id,
            "state": self.state,
            "queue": self.queue,
            "worker": self.worker,
            "args": self.args,
            "meta": self.meta,
            "tags": self.tags,
            "priority": self.priority,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "errors": self.errors,
            "attempted_by": self.attempted_by,
            "inserted_at": iso(self.inserted_at),
            "scheduled_at": iso(self.scheduled_at),
            "attempted_at": iso(self.attempted_at),
            "completed_at": iso(self.completed_at),
            "discarded_at": iso(self.discarded_at),
            "cancelled_at": iso(self.cancelled_at),
            "conflict": self.conflict,
        }


def _schedule_delta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError("schedule_in", f"expected seconds (a number) or a timedelta, got {value!r}")
    return timedelta(seconds=value)


def check(job: Job) -> Job:
    """Cheap re-check of a job built without `Job.new` (a raw dataclass), before it is written."""
    if not isinstance(job, Job):
        raise ValidationError("job", f"expected an oban_bridge Job (see Job.new), got {type(job).__name__}")
    _check_name(job.worker, "worker")
    _check_name(job.queue, "queue")
    _check_int(job.priority, "priority", 0, 9, "an integer from 0 to 9")
    _check_int(job.max_attempts, "max_attempts", 1, _INT4_MAX, "an integer from 1 to 2147483647 (the column is integer)")
    if job.state not in STATES:
        raise ValidationError("state", f"expected one of {', '.join(STATES)}, got {job.state!r}")
    if not isinstance(job.args, dict):
        raise ValidationError("args", f"expected a JSON object (a dict), got {type(job.args).__name__}")
    if not isinstance(job.meta, dict):
        raise ValidationError("meta", f"expected a JSON object (a dict), got {type(job.meta).__name__}")
    return job
