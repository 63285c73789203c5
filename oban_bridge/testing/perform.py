"""`build_job` and `perform_job`: a worker's unit test without a node (lib/oban/testing.ex).

`build_job` builds the job as an insert would (the worker's `new`: its defaults, option checks,
Pro's structured args and encryption, args and meta through JSON) and fills in what a fetch
would (an id, attempt 1, attempted_at). `perform_job` runs it once, in the caller, the way a node
runs an attempt (testing/attempt.py), and returns what `process` returned — or raises what it
raised: like Oban's, it runs unsafe (`safe: false`), so a failing job fails the test with its
own traceback.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from .. import recorded
from ..errors import ObanBridgeError, ValidationError
from ..job import Job, to_utc, utc_now
from ..pro.options import DEADLINE_EXCEEDED
from ..worker import Cancel, Error, WorkerSpec, lookup
from .attempt import Ran, run_async, run_sync

# Fields a fetch sets rather than `new`: given to build_job, they are set on the built job.
_FETCH_FIELDS = ("id", "attempt", "attempted_at", "attempted_by", "inserted_at", "errors")

# Ids for jobs that never touch a table (System.unique_integer([:positive]) in Oban's build_job).
_ids = itertools.count(1)


class JobTimeoutError(ObanBridgeError, TimeoutError):
    """A job run by `perform_job` (or in inline mode) outlived its timeout. On a node the attempt
    fails with `** (Oban.TimeoutError) … timed out after Nms`; here the test fails with it."""


def resolve(worker: Any) -> WorkerSpec:
    """A Python worker: its class or function (as decorated) or its registered name."""
    spec = getattr(worker, "__oban_spec__", None)
    if isinstance(worker, WorkerSpec):
        spec = worker
    elif isinstance(worker, str):
        spec = lookup(worker.removeprefix("Elixir."))
    if not isinstance(spec, WorkerSpec):
        known = ", ".join(sorted(_known())) or "none"
        raise AssertionError(f"Expected a worker registered with @worker (its class, function or name), got: "
                             f"{worker!r}\nRegistered: {known}")
    return spec


def _known() -> list[str]:
    from ..worker import registry

    return list(registry())


def next_id() -> int:
    return next(_ids)


def build_job(worker: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Job:
    """The job `perform_job` runs: `worker.new(args, **opts)` plus what a fetch sets. `id`,
    `attempt`, `attempted_at`, `attempted_by`, `inserted_at` and `errors` may be given too (to
    test a last attempt, say: `attempt=20`). Invalid options fail the test, naming the field."""
    spec = resolve(worker)
    fetched = {key: opts.pop(key) for key in _FETCH_FIELDS if key in opts}
    try:
        job = spec.new(args, **opts)
    except ValidationError as exc:
        raise AssertionError(f"Expected args and opts to build a valid job, got validation errors:\n\n"
                             f"{exc.field}: {exc.message}") from exc
    except TypeError as exc:  # an option `new` does not take
        raise AssertionError(f"Expected args and opts to build a valid job: {exc}") from exc
    now = utc_now()
    attempt = fetched.get("attempt", 1)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise AssertionError(f"Expected args and opts to build a valid job, got validation errors:\n\n"
                             f"attempt: expected a positive integer, got {attempt!r}")
    for key in ("attempted_at", "inserted_at"):
        if key in fetched and not isinstance(fetched[key], datetime):
            raise AssertionError(f"Expected args and opts to build a valid job, got validation errors:\n\n"
                                 f"{key}: expected a datetime, got {fetched[key]!r}")
    return replace(
        job,
        id=fetched.get("id", next_id()),
        attempt=attempt,
        attempted_at=to_utc(fetched.get("attempted_at", now)),
        attempted_by=fetched.get("attempted_by"),
        inserted_at=to_utc(fetched.get("inserted_at", now)),
        scheduled_at=job.scheduled_at or now,
        errors=list(fetched.get("errors", [])),
    )


def _job(worker_or_job: Any, args: Mapping[str, Any] | None, opts: dict[str, Any]) -> tuple[Job, WorkerSpec]:
    if isinstance(worker_or_job, Job):
        if args is not None or opts:
            raise TypeError("perform_job(job) takes no args or options: build the job with them instead")
        return worker_or_job, resolve(worker_or_job.worker)
    return build_job(worker_or_job, args, **opts), resolve(worker_or_job)


def unsafe(ran: Ran) -> Any:
    """The attempt's value, or its failure raised (Oban's executor with `safe: false`)."""
    if ran.error is not None:
        raise ran.error
    attempt = ran.attempt
    if attempt.stop == "timeout":
        millis = round((attempt.timeout or 0) * 1000)
        raise JobTimeoutError(f"{attempt.job.worker} timed out after {millis}ms")
    if attempt.stop == "deadline":
        return Cancel(DEADLINE_EXCEEDED)  # stopped at its forced deadline: what a node records
    result = ran.result
    spec = attempt.spec
    if (ran.outcome.event in ("failure", "exhausted") and not isinstance(result, Error)
            and spec is not None and spec.recorded_limit is not None):
        # The value could not be recorded: on a node, a failed attempt; here, the reason raised.
        recorded.encode(result, spec.recorded_limit)
    return result


def perform_job(worker_or_job: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Any:
    """Run one attempt of a job in the caller and return what `process` returned (None, a value,
    `Snooze`, `Cancel`, `Discard`, `Error`), honouring what a node does before and after it:
    structured args cast, encrypted args decrypted, hooks, the recorded value's limit, a deadline
    and the timeout (`JobTimeoutError`). An exception the job raises is raised here.

    `perform_job(Worker, {"id": 1}, attempt=3)` builds the job first (`build_job`);
    `perform_job(job)` runs a job already built or read back from the table."""
    job, spec = _job(worker_or_job, args, opts)
    return unsafe(run_sync(job, spec=spec))


async def perform_job_async(worker_or_job: Any, args: Mapping[str, Any] | None = None, **opts: Any) -> Any:
    """`perform_job` from async code: `async def` jobs run on the caller's loop."""
    job, spec = _job(worker_or_job, args, opts)
    return unsafe(await run_async(job, spec=spec))
