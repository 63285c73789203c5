"""Python steps in Hephaestus workflows.

    @step("Elixir.MyApp.Steps.RenderPdf", events=["rendered", "failed"], context_keys=["pdf_url"])
    def render_pdf(ctx):
        url = render(ctx.initial["user_id"])
        return StepResult("rendered", context={"pdf_url": url})

The Elixir workflow names a stub module for the step (Hephaestus only compiles a workflow whose
steps exist in Elixir with `events/0`); the stub enqueues a job for `STEP_WORKER` in a queue only
Python nodes run, and returns `{:async}` (README, examples/hephaestus_step). That job runs here:
once the instance is waiting at the step it calls the handler, then hands the result over.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import set_json_loads


from psycopg import sql

from .. import jsonc
from ..db import prefixed, run_async
from ..executor import format_exception
from ..insert import settle_plan, unique_lock_plan
from ..job import Job
from ..runtime import current
from ..plugins.lifeline import on_rescued_out_of_attempts
from ..worker import Discard, Snooze, worker
from .handover import (Handover, HandoverError, HandoverResult, NotReady, advance_plan, failure_plan, handover_plan,
                       load_plan)
from .names import module_ref

STEP_WORKER = "oban_bridge.hephaestus.ExecuteStep"
STEP_QUEUE = "hephaestus_python"
ADVANCE_PATIENCE = 600.0  # seconds an executing AdvanceWorker is waited for (_confirm)
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class StepResult:
    """`{:ok, event, context_updates, metadata_updates}` from a Python step."""

    event: str
    context: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Async:
    """`{:async}`: the step stays waiting; `resume(...)` finishes it later."""


@dataclass(slots=True)
class StepContext:
    instance_id: str
    step_ref: str
    workflow: str
    workflow_version: int
    initial: dict[str, Any]
    steps: dict[str, Any]
    job: Job


@dataclass(slots=True)
class StepSpec:
    step_ref: str
    handler: Callable[[StepContext], Any]
    events: list[str]
    context_keys: list[str]
    is_async: bool
    timeout: float | None = None


_steps: dict[str, StepSpec] = {}


def registered(step_ref: str) -> StepSpec | None:
    return _steps.get(module_ref(step_ref))


def step(step_ref: str, *, events: Iterable[str], context_keys: Iterable[str] = (),
         timeout: float | None = None) -> Callable[[F], F]:
    """Declare the Python handler of an Elixir step module. `events` and `context_keys` must match
    what the Elixir stub declares (events/0, context_keys/0): those atoms are what Elixir can load.
    `timeout` (seconds) stops an attempt like a worker's timeout; on the last attempt the workflow
    fails, as every other way a step can fail does."""
    ref = module_ref(step_ref)
    declared = [str(e) for e in events]
    if not declared:
        raise ValueError(f"step {ref}: declare at least one event (the stub's events/0)")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"step {ref}: timeout must be a positive number of seconds, got {timeout!r}")

    def decorate(handler: F) -> F:
        if ref in _steps and _steps[ref].handler is not handler:
            raise ValueError(f"step {ref} already has a Python handler")
        _steps[ref] = StepSpec(ref, handler, declared, [str(k) for k in context_keys],
                               inspect.iscoroutinefunction(handler), timeout)
        return handler

    return decorate


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    set_json_loads(jsonc.loads, conn)
    return conn


async def handover(conn: psycopg.AsyncConnection[Any], prefix: str, heph_prefix: str, h: Handover,
                   *, settle_timeout: float = 2.0) -> HandoverResult:
    """Run the hand-over in its own transaction, then settle the AdvanceWorker insert against a
    concurrent Elixir enqueue (insert.settle_plan), holding the unique lock throughout."""
    probe = Job.new("HephaestusOban.AdvanceWorker", {"instance_id": h.instance_id},
                    unique={"keys": ["instance_id"], "period": "infinity",
                            "states": ["available", "scheduled", "executing", "retryable"]})
    await run_async(conn, unique_lock_plan(prefix, probe))
    try:
        async with conn.transaction():
            result = await run_async(conn, handover_plan(prefix, heph_prefix, h))
        if result.advance_job is not None:
            result.advance_job = await run_async(conn, settle_plan(prefix, result.advance_job, settle_timeout))
        return result
    finally:
        await run_async(conn, unique_lock_plan(prefix, probe, release=True))


def spec_timeout(job: Job) -> int:
    seconds = _step_timeout(job)
    return round((seconds or 0) * 1000)


def _step_timeout(job: Job) -> float | None:
    """STEP_WORKER's timeout: the running step's own (`@step(..., timeout=)`)."""
    ref = job.args.get("step_ref") if isinstance(job.args, dict) else None
    spec = registered(ref) if isinstance(ref, str) else None
    return None if spec is None else spec.timeout


async def _fail_workflow(conn: psycopg.AsyncConnection[Any], prefix: str, heph_prefix: str, job: Job,
                         error_text: str, node: str) -> None:
    """Write what Hephaestus reads when a step is out of attempts (handover.failure_plan: nothing
    unless the instance still waits at this step with no result recorded), so the Elixir
    AdvanceWorker fails the workflow as it fails an Elixir step, instead of waiting forever."""
    async with conn.transaction():
        await run_async(conn, failure_plan(
            prefix, heph_prefix, job.args, error_text, attempt=max(1, job.attempt),
            max_attempts=job.max_attempts, attempted_by=list(job.attempted_by or [node, ""])))


async def _fail_workflow_apart(url: str, prefix: str, heph_prefix: str, job: Job, error_text: str,
                               node: str) -> None:
    """The same on a connection of its own: the step's may be mid-statement when a timeout hits."""
    conn = await _connect(url)
    try:
        await _fail_workflow(conn, prefix, heph_prefix, job, error_text, node)
    finally:
        await conn.close()


async def _rescued(conn: psycopg.AsyncConnection[Any], prefix: str, job: Job) -> None:
    """A step job the lifeline discarded (its node died on the last attempt): nothing ran to
    record the failure, so the lifeline hands it here."""
    if not all(isinstance(job.args.get(k), str) for k in ("instance_id", "step_ref", "workflow")):
        return
    heph_prefix = str(job.args.get("hephaestus_prefix") or prefix)
    await _fail_workflow(conn, prefix, heph_prefix, job,
                         f"** (Oban.CrashError) {STEP_WORKER} was rescued after its node stopped, with no "
                         f"attempts left (attempt {job.attempt} of {job.max_attempts})",
                         (job.attempted_by or ["?"])[0])


on_rescued_out_of_attempts(STEP_WORKER, _rescued)


@worker(STEP_WORKER, queue=STEP_QUEUE, max_attempts=5, timeout=_step_timeout)
async def execute_step(job: Job) -> Any:
    """The Python twin of HephaestusOban.ExecuteStepWorker for steps declared with @step.

    Whatever ends the last attempt — the handler raising, the hand-over failing, the step's
    timeout anywhere in the run — the workflow hears of it (`_fail_workflow`); a shutdown (the
    job stays for the lifeline) and a pkill (an operator's cancel) are not step failures."""
    args = job.args
    for key in ("instance_id", "step_ref", "workflow"):
        if not isinstance(args.get(key), str):
            raise ValueError(f"step job args need {key!r} (got {sorted(args)})")
    step_ref = module_ref(args["step_ref"])
    spec = registered(step_ref)
    if spec is None:
        raise RuntimeError(f"no Python handler is declared for {step_ref} (use @step)")
    runtime = current()
    heph_prefix = str(args.get("hephaestus_prefix") or runtime.prefix)
    last = job.attempt >= job.max_attempts
    try:
        return await _run_step(job, spec, step_ref, heph_prefix, runtime.url, runtime.prefix, runtime.node)
    except asyncio.CancelledError:
        if last and job.stop_requested == "timeout":
            await asyncio.shield(_fail_workflow_apart(
                runtime.url, runtime.prefix, heph_prefix, job,
                f"** (Oban.TimeoutError) {STEP_WORKER} timed out after {spec_timeout(job)}ms", runtime.node))
        raise
    except Exception as exc:
        if last:
            await _fail_workflow_apart(runtime.url, runtime.prefix, heph_prefix, job, format_exception(exc),
                                       runtime.node)
        raise


async def _run_step(job: Job, spec: StepSpec, step_ref: str, heph_prefix: str, url: str, prefix: str,
                    node: str) -> Any:
    args = job.args
    conn = await _connect(url)
    try:
        instance, _ = await run_async(conn, load_plan(prefix, heph_prefix, args["instance_id"], step_ref))
        if instance is None:
            raise RuntimeError(f"workflow instance not found: {args['instance_id']}")
        if not (instance.status == "waiting" and instance.current_step == step_ref):
            if step_ref in instance.active_steps and instance.status not in ("completed", "failed"):
                return Snooze(1)  # Hephaestus has not recorded the step's {:async} yet
            return None  # already handed over (a re-run after a crash changes nothing twice)
        pending = await (await conn.execute(
            prefixed("heph_pending", prefix, heph=sql.Identifier(heph_prefix)),
            {"id": instance.id, "step_ref": step_ref})).fetchall()
        if pending:
            # Our result is recorded: make sure an AdvanceWorker will apply it (see _confirm).
            return await _confirm(conn, prefix, heph_prefix, instance.id, step_ref, args)
        context = StepContext(
            instance_id=instance.id, step_ref=step_ref, workflow=instance.workflow,
            workflow_version=instance.workflow_version,
            initial=dict(instance.context.get("initial") or {}),
            steps=dict(instance.context.get("steps") or {}), job=job,
        )
        if spec.is_async:
            outcome = await spec.handler(context)
        else:
            outcome = await asyncio.to_thread(spec.handler, context)
        if isinstance(outcome, Async):
            return None
        if isinstance(outcome, str):
            outcome = StepResult(outcome)
        if not isinstance(outcome, StepResult):
            # The same handler returns the same kind of value next time: refused for good.
            return await _refuse(conn, prefix, heph_prefix, job, node, TypeError(
                f"step {step_ref} returned {outcome!r}; expected StepResult(event, ...), an event name or Async()"))
        try:
            result = await handover(conn, prefix, heph_prefix, Handover(
                instance_id=instance.id, step_ref=step_ref, event=outcome.event,
                context=dict(outcome.context), metadata=dict(outcome.metadata),
                config_key=args.get("config_key"), events=spec.events, context_keys=spec.context_keys,
                require_waiting=False,
            ))
        except NotReady:
            return Snooze(1)
        except HandoverError as exc:
            return await _refuse(conn, prefix, heph_prefix, job, node, exc)
        if result.advance_job is not None and result.advance_job.conflict:
            return await _confirm(conn, prefix, heph_prefix, instance.id, step_ref, args)
        return None
    finally:
        await conn.close()


async def _confirm(conn: psycopg.AsyncConnection[Any], prefix: str, heph_prefix: str, instance_id: str,
                   step_ref: str, args: Mapping[str, Any]) -> Snooze | None:
    """The hand-over joined an existing AdvanceWorker. One that has not started will apply our
    result. One that is `executing` may have committed its transaction (and read the results)
    before ours, its row merely not acked yet: then nothing would apply our result, and the
    workflow would wait forever — hephaestus_oban's own step worker has this window. So check
    again shortly, and once no AdvanceWorker is left to run, enqueue one."""
    live = await (await conn.execute(prefixed("heph_live_advance", prefix),
                                     {"id": instance_id, "patience": ADVANCE_PATIENCE})).fetchall()
    states = {row[1] for row in live}
    if "executing" in states:
        # Wait for it to be acked — but not for one stuck on a dead node for good: after ten
        # minutes that is its Lifeline's business, and snoozing would go on for ever.
        if any(row[1] == "executing" and row[2] is not None and row[2] < 0 for row in live):
            log.warning("hand-over joined an AdvanceWorker stuck executing; leaving it to the Lifeline",
                        extra={"instance_id": instance_id})
            return None
        return Snooze(1)
    if states:
        return None
    still = await (await conn.execute(prefixed("heph_pending", prefix, heph=sql.Identifier(heph_prefix)),
                                      {"id": instance_id, "step_ref": step_ref})).fetchall()
    if still:
        await reenqueue_advance(conn, prefix, heph_prefix, instance_id, step_ref, args.get("config_key"))
    return None


async def reenqueue_advance(conn: psycopg.AsyncConnection[Any], prefix: str, heph_prefix: str,
                            instance_id: str, step_ref: str, config_key: Any) -> None:
    probe = Job.new("HephaestusOban.AdvanceWorker", {"instance_id": instance_id},
                    unique={"keys": ["instance_id"], "period": "infinity",
                            "states": ["available", "scheduled", "executing", "retryable"]})
    await run_async(conn, unique_lock_plan(prefix, probe))
    try:
        async with conn.transaction():
            job = await run_async(conn, advance_plan(prefix, heph_prefix, instance_id, step_ref, config_key))
        if job is not None:
            await run_async(conn, settle_plan(prefix, job, 2.0))
    finally:
        await run_async(conn, unique_lock_plan(prefix, probe, release=True))


async def _refuse(conn: psycopg.AsyncConnection[Any], prefix: str, heph_prefix: str, job: Job, node: str,
                  exc: Exception) -> Discard:
    """A result Elixir could not load (an undeclared event or context key, a wrong return type)
    cannot succeed on a retry: fail the workflow now, saying what was refused, and discard."""
    await _fail_workflow(conn, prefix, heph_prefix, job, format_exception(exc), node)
    return Discard(str(exc))


__all__ = ["Async", "STEP_QUEUE", "STEP_WORKER", "StepContext", "StepResult", "execute_step", "handover",
           "registered", "step", "format_exception"]
