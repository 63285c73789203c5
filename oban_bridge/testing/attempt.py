"""One attempt run in the caller, for `perform_job`, the drains and inline mode.

The producer runs a job on a job thread or a task and hands its outcome to a batched ack; a test
wants the job run where it can see it, now. So this runs the same steps the producer does —
`executor.begin`, the Pro gate, `prepare` (structured args cast, encrypted args decrypted, the
timeout or a forced deadline), the `before_process` hooks, `process`, `executor.finish` (the ack
Elixir's executor would write) and the `after_process` hooks — in the calling thread, as
`Oban.Queues.Executor.call/1` runs in the calling process (lib/oban/queues/executor.ex).

Where the job runs:
- a plain `def` job without a timeout runs in the sync helpers' caller's thread (thread-locals and
  a test's open transaction are the caller's); the async helpers run it on a thread, as a node
  does, so the event loop is never blocked;
- a plain `def` job with a timeout runs on a thread of its own, since only then can the caller
  stop waiting for it when the time is up; as on a node, it is then asked to stop
  (`job.cancelled`), as Python cannot kill a thread;
- an `async def` job runs on the caller's event loop (the async helpers) or on a private one (the
  sync helpers), and is cancelled when its time is up.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import tracing
from ..executor import Attempt, Outcome, begin, finish, prepare, run_with_hooks
from ..job import Job
from ..loop import new_event_loop
from ..pro import hooks
from ..pro.options import DEADLINE_EXCEEDED
from ..worker import Cancel, Error, WorkerSpec, lookup

# After its timeout, a `def` job is asked to stop and given this long to return before the
# caller stops waiting for it (it cannot be killed; a job that checks `job.cancelled` returns).
STOP_WAIT = 1.0

# The Pro gate for the drains: given the attempt, the result to record instead of running the job
# (a deadline passed, a chain halted or waits), or None to run it.
Gate = Callable[[Attempt], Any]


@dataclass(slots=True)
class Ran:
    """What one attempt did: the worker's return value (or the gate's early result), the
    exception it raised, and the outcome a node would write (its ack and event)."""

    attempt: Attempt
    result: Any
    error: BaseException | None
    outcome: Outcome

    @property
    def timed_out(self) -> bool:
        return self.attempt.stop == "timeout"


def unit_gate(attempt: Attempt) -> Any:
    """The gate without a database (perform_job, inline mode): the deadline only; a chain's
    upstream lives in the table, so chained jobs run as if first in their chain."""
    assert attempt.spec is not None
    pro = attempt.spec.pro
    if pro is not None and pro.deadline is not None and pro.expired(attempt.job):
        return Cancel(DEADLINE_EXCEEDED)
    return None


def _begin(job: Job, spec: WorkerSpec | None) -> tuple[Attempt, BaseException | None]:
    """The attempt, with its span when tracing is set up: Oban.Testing's perform_job and drains
    run Executor.call/1, whose telemetry events opentelemetry_oban turns into spans there too."""
    attempt, error = begin(job, (lambda _name: spec) if spec is not None else lookup)
    if tracing._config is not None:
        attempt.span = tracing.start_job_span(job)
    return attempt, error


def _perform(attempt: Attempt) -> Callable[[Job], Any]:
    """The worker's perform, run in the attempt's context (its own spans are the attempt's
    children); an `async def` perform's coroutine is awaited in that context by the caller."""
    assert attempt.spec is not None
    if attempt.spec.is_async:
        return attempt.spec.perform
    return tracing.call_in(attempt.span, attempt.spec.perform)


def _gated(attempt: Attempt) -> bool:
    return attempt.spec is not None and attempt.spec.pro is not None


def _prepare(attempt: Attempt, early: Any) -> tuple[Any, BaseException | None, bool]:
    """The early result or error, and whether `process` should now run."""
    assert attempt.spec is not None
    if early is not None:
        # A job the deadline or a halt cancels still finished processing: its after_process
        # hooks run, as the producer runs them (executor.gate's callers).
        attempt.hooks = hooks.for_spec(attempt.spec)
        return early, None, False
    try:
        prepare(attempt)
    except Exception as exc:  # noqa: BLE001 - a failed attempt, as a raise inside process is
        return None, exc, False
    return None, None, True


def _reason(attempt: Attempt) -> str:
    return "deadline" if attempt.by_deadline else "timeout"


def _finish(attempt: Attempt, result: Any, error: BaseException | None) -> Ran:
    outcome = finish(attempt, result, error)
    assert outcome is not None  # only a node's shutdown leaves an attempt without one
    if outcome.after is not None:
        outcome.after()
    return Ran(attempt, result, error, outcome)


def _threaded(attempt: Attempt, call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run a `def` job on a thread of its own and wait at most its timeout for it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"oban-bridge-test-job-{attempt.job.id}", daemon=True)
    thread.start()
    thread.join(attempt.timeout)
    if thread.is_alive():
        attempt.request_stop(_reason(attempt))
        thread.join(STOP_WAIT)
        return None, None
    return box.get("result"), box.get("error")


async def _bounded(attempt: Attempt, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await an `async def` job, cancelling it when its timeout passes, as a node does."""
    task = asyncio.ensure_future(coro)
    attempt.task = task  # request_stop cancels it
    try:
        done, _ = await asyncio.wait({task}, timeout=attempt.timeout)
        if not done:
            attempt.request_stop(_reason(attempt))
            try:
                await task
            except asyncio.CancelledError:
                pass
            return None
        return task.result()
    finally:
        attempt.task = None


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from sync code: on a private loop, or — when this thread already
    runs a loop (a sync helper called from an async test) — on a private loop in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run_coroutine(coro)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="oban-bridge-test-loop", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def run_sync(job: Job, *, spec: WorkerSpec | None = None, gate: Gate = unit_gate) -> Ran:
    """Run one attempt of `job` from sync code (see the module docstring for where)."""
    attempt, error = _begin(job, spec)
    result: Any = None
    go = False
    if error is None:
        try:
            result, error, go = _prepare(attempt, gate(attempt) if _gated(attempt) else None)
        except Exception as exc:  # noqa: BLE001 - the gate's query failed: a failed attempt
            error = exc
    if go:
        assert attempt.spec is not None
        perform = _perform(attempt)
        try:
            if attempt.spec.is_async:
                out = run_with_hooks(perform, attempt)
                result = run_coroutine(_bounded(attempt, tracing.await_in(attempt.span, out))) \
                    if inspect.iscoroutine(out) else out
            elif attempt.timeout is None:
                result = run_with_hooks(perform, attempt)
            else:
                result, error = _threaded(attempt, lambda: run_with_hooks(perform, attempt))
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise  # the test run is being stopped, not the job failing
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: executor.ex catches every kind
            result, error = None, exc
    return _finish(attempt, result, error)


AsyncGate = Callable[[Attempt], Coroutine[Any, Any, Any]]


async def _unit_gate_async(attempt: Attempt) -> Any:
    return unit_gate(attempt)


async def run_async(job: Job, *, spec: WorkerSpec | None = None, gate: AsyncGate = _unit_gate_async) -> Ran:
    """Run one attempt of `job` from async code: `async def` jobs on this loop, `def` jobs on a
    thread (as on a node), so the loop is never blocked by a job."""
    attempt, error = _begin(job, spec)
    result: Any = None
    go = False
    if error is None:
        try:
            result, error, go = _prepare(attempt, await gate(attempt) if _gated(attempt) else None)
        except Exception as exc:  # noqa: BLE001 - the gate's query failed: a failed attempt
            error = exc
    if go:
        assert attempt.spec is not None
        perform = _perform(attempt)
        try:
            if attempt.spec.is_async:
                hooked: Any = attempt.run_job
                if attempt.hooks and hooks.has(attempt.hooks, "before_process"):
                    hooked = await asyncio.to_thread(hooks.before_process, attempt.hooks, attempt.run_job)
                if isinstance(hooked, (Cancel, Error)):
                    result = hooked
                else:
                    attempt.run_job = hooked
                    result = await _bounded(attempt, tracing.await_in(attempt.span, perform(hooked)))
            elif attempt.timeout is None:
                result = await asyncio.to_thread(run_with_hooks, perform, attempt)
            else:
                result, error = await asyncio.to_thread(_threaded, attempt, lambda: run_with_hooks(perform, attempt))
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise  # the test run (or this task) is being stopped, not the job failing
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: executor.ex catches every kind
            result, error = None, exc
    if attempt.hooks:  # after_process hooks may block: not on the loop
        return await asyncio.to_thread(_finish, attempt, result, error)
    return _finish(attempt, result, error)
