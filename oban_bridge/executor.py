"""Run one job and turn what happened into the write Elixir's executor would make
(lib/oban/queue/executor.ex): the outcome, the error text stored in `errors`, the backoff.

Error texts follow Elixir's `Exception.format/3`, so Oban Web shows Python failures the way it
shows Elixir ones: `** (Oban.PerformError) W failed with {:error, "reason"}`, or for an exception
`** (ValueError) message` followed by the stack, one frame per line.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import traceback
from pathlib import Path
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import engine, recorded
from .pro.options import DEADLINE_EXCEEDED
from .term import Atom, TermError
from .engine import Ack
from .job import Job, to_utc
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


def _ack_for(job: Job, spec: WorkerSpec | None, result: Any, exc: BaseException | None,
             now: datetime) -> tuple[Ack, str]:
    if exc is not None:
        text = format_exception(exc) if not isinstance(exc, _Timeout) else exc.text
        return _failure(job, spec, text, now)
    if isinstance(result, Snooze):
        return engine.snooze(job, now, result.seconds), "snoozed"
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
        return engine.complete(job, now, {"recorded": True, "return": encoded}), "success"
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


class _Timeout(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


async def execute(job: Job, threads: Executor, resolve: Callable[[str], WorkerSpec | None] = lookup) -> Outcome:
    """Run `job` to an outcome. Never raises, except when the task itself is cancelled (a
    `pkill`), in which case nothing is acked: whoever cancelled the job already wrote its state."""
    started = time.perf_counter()
    attempted = job.attempted_at or to_utc(engine.db_now())
    queue_time = max(0.0, (attempted - (job.scheduled_at or attempted)).total_seconds())
    spec = resolve(job.worker)
    result: Any = None
    exc: BaseException | None = None
    if spec is None:
        # executor.ex resolve_worker/1: Worker.from_string's error, retried and then discarded.
        exc = RuntimeError(f"unknown worker: {job.worker}")
    elif not isinstance(job.args, dict) or not isinstance(job.meta, dict):
        # A row written by hand or by another tool; Ecto could not even load it. Fail the attempt
        # with a clear error instead of handing the worker something it never expects.
        which, value = ("args", job.args) if not isinstance(job.args, dict) else ("meta", job.meta)
        exc = TypeError(f"job {which} must be a JSON object, got {type(value).__name__}")
    else:
        pro = spec.pro
        try:
            timeout = spec.timeout(job)
            early = await _pro_gate(pro, job) if pro is not None else None
            if early is not None:
                result = early
                raise _Done
            run_job = pro.prepare(job) if pro is not None else job
            remaining = pro.remaining(job) if pro is not None else None
            by_deadline = remaining is not None and (timeout is None or remaining <= timeout)
            if remaining is not None:
                timeout = remaining if timeout is None else min(timeout, remaining)
            if spec.is_async:
                call = spec.perform(run_job)
            else:
                # Executor threads do not inherit context variables; carry them over so a plain
                # def worker sees the same `runtime.current()` an async one does.
                context = contextvars.copy_context()
                call = asyncio.get_running_loop().run_in_executor(threads, context.run, spec.perform, run_job)
            if timeout is None:
                result = await call
            else:
                try:
                    result = await asyncio.wait_for(call, timeout)
                except TimeoutError:
                    if by_deadline:
                        result = Cancel(DEADLINE_EXCEEDED)  # `force`: stopped at the deadline
                    else:
                        millis = int(timeout * 1000)
                        exc = _Timeout(f"** (Oban.TimeoutError) {job.worker} timed out after {millis}ms")
        except _Done:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any exception is a failed attempt, as in Elixir
            exc = error
    now = engine.db_now()
    ack, event = _ack_for(job, spec, result, exc, now)
    if spec is not None and spec.pro is not None:
        from .pro.hooks import after_process

        after_process(spec.pro.all_hooks(), event, job, exc if exc is not None else result)
    return Outcome(job, ack, event, time.perf_counter() - started, queue_time)


class _Done(Exception):
    """A Pro gate decided the outcome before `process` ran."""


async def _pro_gate(pro: Any, job: Job) -> Any:
    """Deadline and chain checks before a job runs (pro/deadline.py, pro/chain.py)."""
    from .pro import chain as chain_mod
    from .pro.options import CHAIN_HALTED

    if pro.deadline is not None and pro.expired(job):
        return Cancel(DEADLINE_EXCEEDED)
    if pro.chain is not None and chain_mod.META_KEY in (job.meta or {}):
        import orjson
        from psycopg import sql

        from .runtime import current

        runtime = current()
        conn = await runtime.connection()
        try:
            query = sql.SQL(chain_mod.PREDECESSORS_SQL).format(sql.Identifier(runtime.prefix))
            cur = await conn.execute(query, [orjson.dumps({chain_mod.META_KEY: job.meta[chain_mod.META_KEY]}).decode(), job.id])
            states = {row[0] for row in await cur.fetchall()}
        finally:
            await conn.close()
        decision = chain_mod.decide(pro.chain, states)
        if decision == "wait":
            return Snooze(pro.chain.wait)
        if decision == "halt":
            return Cancel(CHAIN_HALTED)
    return None


def log_outcome(outcome: Outcome) -> None:
    """One structured record per job event (fields as attributes, for JSON log formatters)."""
    job = outcome.job
    level = logging.INFO if outcome.event in ("success", "snoozed") else logging.WARNING
    if log.isEnabledFor(level):
        log.log(
            level,
            "job %s %s",
            job.worker,
            outcome.event,
            extra={
                "event": outcome.event,
                "worker": job.worker,
                "queue": job.queue,
                "job_id": job.id,
                "attempt": job.attempt,
                "state": outcome.ack.state,
                "duration": round(outcome.duration, 6),
                "queue_time": round(outcome.queue_time, 6),
            },
        )
