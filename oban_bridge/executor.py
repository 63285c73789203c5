"""Run one job and turn what happened into the write Elixir's executor would make
(lib/oban/queue/executor.ex): the outcome, the error text stored in `errors`, the backoff.

Error texts follow Elixir's `Exception.format/3`, so Oban Web shows Python failures the way it
shows Elixir ones: `** (Oban.PerformError) W failed with {:error, "reason"}`, or for an exception
`** (ValueError) message` followed by the stack, one frame per line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from . import engine, recorded, tracing
from .pro import hooks
from .pro.chain import ChainWait
from .pro.options import DEADLINE_EXCEEDED
from .term import Atom, TermError
from .db import Plan, Query, prefixed, run_async
from .engine import Ack
from .errors import JobCancelledError
from .isolation import ChildKilled
from .job import Job
from .worker import Cancel, Discard, Error, Snooze, WorkerSpec, lookup

log = logging.getLogger("oban_bridge.job")


def inspect_term(value: Any) -> str:
    """Elixir's `inspect/1` of the JSON-ish values a Python worker returns."""
    if isinstance(value, Atom):
        return str(value).removeprefix("Elixir.") if str(value).startswith("Elixir.") else f":{value}"
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t").replace("\r", "\\r").replace("#{", "\\#{"))
        return f'"{escaped}"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "{" + ", ".join(inspect_term(v) for v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inspect_term(v) for v in value) + "]"
    if isinstance(value, dict):
        return "%{" + ", ".join(f"{inspect_term(k)} => {inspect_term(v)}" for k, v in value.items()) + "}"
    return inspect_term(str(value))


def perform_error(worker: str, kind: str, reason: Any) -> str:
    """Oban.PerformError: `"#{worker} failed with #{inspect(result)}"`."""
    result = f":{kind}" if reason is None and kind == "discard" else "{" + f":{kind}, {inspect_term(reason)}" + "}"
    return f"** (Oban.PerformError) {worker} failed with {result}"


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


_OWN_FRAMES = (str(Path(__file__).resolve().parent), "concurrent/futures/", "asyncio/")


def format_exception(exc: BaseException) -> str:
    """`Exception.format(:error, exc, stacktrace)`: the banner, then one line per frame of the
    worker's own code (oban_bridge's and the thread pool's frames are noise to its author), each
    ending in a newline; a bare banner when there is no stack."""
    message = str(exc)
    banner = f"** ({exception_name(exc)}) {message}" if message else f"** ({exception_name(exc)})"
    frames = [
        f"    {frame.filename}:{frame.lineno}: {frame.name}\n"
        for frame in traceback.extract_tb(exc.__traceback__)
        if not any(part in frame.filename for part in _OWN_FRAMES)
    ]
    return banner + ("\n" + "".join(frames) if frames else "")


@dataclass(slots=True)
class Outcome:
    job: Job
    ack: Ack
    event: str  # success | failure | snoozed | cancelled | discard | exhausted
    duration: float
    queue_time: float
    after: Callable[[], None] | None = None  # the after_process hooks, for a thread to run


def _ack_for(job: Job, spec: WorkerSpec | None, result: Any, exc: BaseException | None,
             now: datetime) -> tuple[Ack, str]:
    if exc is not None:
        text = exc.text if isinstance(exc, FormattedError) else format_exception(exc)
        return _failure(job, spec, text, now)
    if isinstance(result, Snooze):
        return engine.snooze(job, now, result.seconds), "snoozed"
    if isinstance(result, ChainWait):
        return engine.chain_wait(job, now, result.seconds), "snoozed"
    if isinstance(result, Cancel):
        return engine.cancel(job, now, perform_error(job.worker, "cancel", result.reason)), "cancelled"
    if isinstance(result, Discard):
        return engine.discard(job, now, perform_error(job.worker, "discard", result.reason)), "discard"
    if isinstance(result, Error):
        return _failure(job, spec, perform_error(job.worker, "error", result.reason), now)
    if spec is not None and spec.recorded_limit is not None and result is not None:
        try:
            encoded = recorded.encode(result, spec.recorded_limit)
        except TermError as exc:  # over the limit, or not representable: a failed attempt
            return _failure(job, spec, f"** (ArgumentError) {exc}", now)
        return engine.complete(job, now, {"recorded": True, spec.recorded_to: encoded}), "success"
    return engine.complete(job, now), "success"


def _failure(job: Job, spec: WorkerSpec | None, text: str, now: datetime) -> tuple[Ack, str]:
    if spec is not None:
        try:
            backoff = spec.backoff(job)
        except Exception:  # a broken backoff hook must not wedge the job
            log.exception("backoff hook failed", extra={"worker": job.worker, "job_id": job.id})
            backoff = WorkerSpec(name=job.worker, target=None).backoff(job)
    else:
        backoff = WorkerSpec(name=job.worker, target=None).backoff(job)
    ack = engine.error(job, now, text, backoff)
    return ack, "exhausted" if ack.state == "discarded" else "failure"


class FormattedError(Exception):
    """A failure whose `errors` text is already written (a timeout, an isolated child's error)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(slots=True, eq=False)
class Attempt:
    """One run of one job, from dispatch until its outcome is handed to the producer.

    The producer keeps it in its running set, holding a slot, until the outcome has committed.
    `stop` is why the job was asked to stop: a job thread cannot be killed, so for plain `def`
    jobs the request only sets `job.cancelled`, and the outcome the job gets when it really returns
    is the one Elixir writes for a process killed for that reason."""

    job: Job
    spec: WorkerSpec | None
    started: float
    run_job: Job  # what `process` sees (Pro: decrypted, cast, hooked)
    timeout: float | None = None
    by_deadline: bool = False
    stop: str | None = None  # timeout | deadline | pkill | shutdown
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    child: Any = None  # isolation.Child while an isolated job runs in one
    finished: bool = False
    hooks: Sequence[Any] = ()  # pro/hooks.py: the worker's, then global ones
    span: Any = None  # tracing.JobSpan: the attempt's OpenTelemetry span, when tracing is on

    def request_stop(self, reason: str) -> bool:
        """Ask the job to stop. A shutdown overrides an earlier reason (nothing is written for a
        job left running at shutdown); otherwise the first reason stands."""
        if self.finished or (self.stop is not None and reason != "shutdown"):
            return False
        self.stop = reason
        self.job.stop_requested = self.run_job.stop_requested = reason
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
        if self.child is not None:
            self.child.kill()
        return True


def begin(job: Job, resolve: Callable[[str], WorkerSpec | None] = lookup) -> tuple[Attempt, BaseException | None]:
    """The attempt, and the error that fails it before any code runs, if there is one."""
    spec = resolve(job.worker)
    attempt = Attempt(job, spec, time.perf_counter(), job)
    if spec is None:
        # executor.ex resolve_worker/1: Worker.from_string's error, retried and then discarded.
        return attempt, RuntimeError(f"unknown worker: {job.worker}")
    if not isinstance(job.args, dict) or not isinstance(job.meta, dict):
        # A row written by hand or by another tool; Ecto could not even load it. Fail the attempt
        # with a clear error instead of handing the worker something it never expects.
        which, value = ("args", job.args) if not isinstance(job.args, dict) else ("meta", job.meta)
        return attempt, TypeError(f"job {which} must be a JSON object, got {type(value).__name__}")
    return attempt, None


def prepare(attempt: Attempt) -> None:
    """The job `process` sees and the time it has (the worker's timeout, or a forced deadline's
    remaining time when sooner). May raise: a failed attempt, as a raise inside `process` is."""
    spec, job = attempt.spec, attempt.job
    assert spec is not None
    timeout = spec.timeout(job)
    pro = spec.pro
    attempt.hooks = hooks.for_spec(spec)
    if pro is not None:
        attempt.run_job = pro.prepare(job)
        remaining = pro.remaining(job)
        if remaining is not None and (timeout is None or remaining <= timeout):
            attempt.by_deadline = True
            timeout = remaining
    attempt.timeout = timeout


async def gate(attempt: Attempt, pool: Any, prefix: str, stopping: Callable[[], bool] = lambda: False) -> Any:
    """Deadline and chain checks before a Pro job runs (pro/deadline.py, pro/chain.py): the
    result to record instead of running it, or None to run it. A chain wait in place ends when
    the node starts stopping: the job is written back as waiting, not left for the lifeline."""
    from .pro import chain as chain_mod

    assert attempt.spec is not None
    pro, job = attempt.spec.pro, attempt.job
    if pro.deadline is not None and pro.expired(job):
        return Cancel(DEADLINE_EXCEEDED)
    chain = pro.chain
    if chain is None or chain_mod.META_KEY not in (job.meta or {}):
        return None
    try:
        return await _chain_gate(chain, pool, prefix, job, stopping)
    except asyncio.CancelledError:
        if attempt.stop != "shutdown" and not stopping():
            raise  # a pkill (a cancel from Oban Web or the CLI): recorded as Elixir records it
        # The node stopped while it waited for its upstream: written back as waiting, not left
        # executing for a lifeline that would count the wait as an attempt.
        return chain_mod.ChainWait(chain.wait_snooze)


def chain_check_plan(chain: Any, prefix: str, job: Job) -> Plan[Any]:
    """One look at a chained job's upstream (queries/chain_upstream.sql): pro/chain.py's decision."""
    from .pro import chain as chain_mod

    partition = orjson.dumps({chain_mod.META_KEY: job.meta[chain_mod.META_KEY]}).decode()
    skip = [state for state, policy in (("discarded", chain.on_discarded), ("cancelled", chain.on_cancelled))
            if policy == "ignore"]
    rows = yield Query(prefixed("chain_upstream", prefix), {"partition": partition, "id": job.id, "skip": skip},
                       rows="tuple")
    return chain_mod.decide(chain, (rows[0][0], rows[0][1]) if rows else None)


def early_result(chain: Any, decision: Any) -> Any:
    """What a chain decision records instead of running the job (None: run it; `check`: wait)."""
    from .pro import chain as chain_mod
    from .pro.options import CHAIN_HALTED

    if decision.action == "run":
        return None
    if decision.action == "halt":
        return Cancel(CHAIN_HALTED)
    if decision.action == "snooze":
        return chain_mod.ChainWait(decision.seconds)
    return chain_mod.ChainWait(chain.wait_snooze)


async def _chain_gate(chain: Any, pool: Any, prefix: str, job: Job, stopping: Callable[[], bool]) -> Any:
    checks = 0
    while True:
        async with pool.connection() as conn:
            decision = await run_async(conn, chain_check_plan(chain, prefix, job))
        if decision.action != "check":
            return early_result(chain, decision)
        # The upstream runs or is about to: look again shortly, holding the slot, as Pro's chain
        # waits `wait_retry` times `wait_sleep` ms before it snoozes.
        if checks >= chain.wait_retry or stopping():
            return early_result(chain, decision)
        checks += 1
        # In slices, so a node that starts stopping writes the job back at once rather than
        # after a long wait_sleep; and if the stop cancels the wait, it is written back too
        # (a wait is not a run: left executing, the lifeline would count it as an attempt).
        until = time.monotonic() + chain.wait_sleep / 1000
        while not stopping() and (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))


def finish(attempt: Attempt, result: Any, exc: BaseException | None) -> Outcome | None:
    """What to write for a finished attempt, or None when nothing may be written (left running at
    shutdown: the row stays `executing` for the lifeline, as Elixir leaves it)."""
    attempt.finished = True
    if attempt.timer is not None:
        attempt.timer.cancel()
        attempt.timer = None
    job, spec, stop = attempt.job, attempt.spec, attempt.stop
    if isinstance(result, ChainWait) and stop == "shutdown":
        stop = None  # a wait ended by the node's stop: written back as waiting, never left executing
    if stop == "shutdown":
        # Stopped because the node is (a cancelled task, a job that heeded job.cancelled, a killed
        # child): no outcome, the row stays executing for the lifeline, as Elixir leaves a job its
        # shutdown killed. A thread that returned or failed on its own gets its real outcome.
        if attempt.task is not None or isinstance(exc, (JobCancelledError, ChildKilled)):
            if attempt.span is not None:
                tracing.end_job_span(attempt.span, None, None)
            return None
        stop = None
    now = engine.db_now()
    if stop == "pkill":
        # producer.ex handle_info(:DOWN, … :shutdown): {:cancel, :shutdown}, written by
        # basic.ex cancel_job/2 with the error appended (the job carries an unsaved error).
        ack, event = engine.cancel(job, now, perform_error(job.worker, "cancel", Atom("shutdown"))), "cancelled"
        result, exc = Cancel(Atom("shutdown")), None
    else:
        if stop == "deadline":
            result, exc = Cancel(DEADLINE_EXCEEDED), None  # `force`: stopped at the deadline
        elif stop == "timeout":
            millis = round((attempt.timeout or 0) * 1000)
            result, exc = None, FormattedError(f"** (Oban.TimeoutError) {job.worker} timed out after {millis}ms")
        ack, event = _ack_for(job, spec, result, exc, now)
    after = _after_hooks(attempt, event, result, exc) if attempt.hooks else None
    duration = time.perf_counter() - attempt.started
    attempted = job.attempted_at
    queue_time = 0.0 if attempted is None or job.scheduled_at is None else \
        max(0.0, (attempted - job.scheduled_at).total_seconds())
    outcome = Outcome(job, ack, event, duration, queue_time, after)
    if attempt.span is not None:
        tracing.end_job_span(attempt.span, outcome, exc)
    return outcome


def run_with_hooks(run: Callable[[Job], Any], attempt: Attempt) -> Any:
    """On the job's thread: before_process hooks, then `process` with the job they return — or,
    when a hook returns Cancel/Error, that result instead of running it (the Pro docs)."""
    out = hooks.before_process(attempt.hooks, attempt.run_job)
    if isinstance(out, (Cancel, Error)):
        return out
    attempt.run_job = out
    return run(out)


def _after_hooks(attempt: Attempt, event: str, result: Any, exc: BaseException | None) -> Callable[[], None] | None:
    """The after_process call for this outcome, or None. A chain wait is not an outcome: the job
    did not run. The job is the one `process` saw; a failure's error is in `unsaved_error`."""
    if isinstance(result, ChainWait) or not hooks.has(attempt.hooks, "after_process"):
        return None
    job = attempt.run_job
    if exc is not None:
        job = replace(job, unsaved_error={"kind": "error", "reason": exc, "stacktrace": exc.__traceback__})
    elif isinstance(result, Error):
        job = replace(job, unsaved_error={"kind": "error", "reason": result.reason, "stacktrace": None})
    chosen, value = attempt.hooks, (None if exc is not None else result)
    return lambda: hooks.after_process(chosen, event, job, value)


def _error_text(error: str) -> str:
    """The message of an errors element (JSON text), for the failure's log record."""
    try:
        return str(orjson.loads(error).get("error", error))
    except (orjson.JSONDecodeError, AttributeError):
        return error


routine_level = logging.DEBUG
_IN_MESSAGE = frozenset({"job_id", "attempt"})  # fields a text line need not repeat after the message


def log_routine_outcomes(enabled: bool) -> None:
    """Log successes and snoozes at INFO (a line per job, as Oban.Telemetry.attach_default_logger)
    instead of DEBUG."""
    global routine_level
    routine_level = logging.INFO if enabled else logging.DEBUG


def log_outcome(outcome: Outcome) -> None:
    """One structured record per job event (fields as attributes, for JSON log formatters)."""
    job = outcome.job
    # Elixir logs nothing per job unless asked: routine outcomes are DEBUG, so a busy node's log
    # stays readable and costs nothing; failures, cancels and discards stay at WARNING. Asked
    # (`--log-jobs`), routine outcomes are INFO as attach_default_logger's (lib/oban/telemetry.ex).
    level = routine_level if outcome.event in ("success", "snoozed") else logging.WARNING
    if log.isEnabledFor(level):
        error = _error_text(outcome.ack.error) if outcome.ack.error else None
        # The id, attempt and the error's first line are in the message itself: an app's own
        # handler with a plain "%(message)s" format still says which job failed and why.
        message, args = ("job %s %s (id %s, attempt %s): %s", (job.worker, outcome.event, job.id, job.attempt,
                                                              error.split("\n", 1)[0])) if error else \
            ("job %s %s (id %s, attempt %s)", (job.worker, outcome.event, job.id, job.attempt))
        log.log(
            level,
            message,
            *args,
            extra={
                "_in_message": _IN_MESSAGE,
                "event": outcome.event,
                "worker": job.worker,
                "queue": job.queue,
                "job_id": job.id,
                "attempt": job.attempt,
                "state": outcome.ack.state,
                "duration": round(outcome.duration, 6),
                "queue_time": round(outcome.queue_time, 6),
                **({"error": error} if error else {}),
            },
        )
