"""`isolation="process"`: a plain-`def` job runs in a child process that can be killed.

Elixir kills a job's process when its timeout passes or it is cancelled (`:timer.exit_after`,
`Task.Supervisor.terminate_child`). A Python thread cannot be killed, so a worker whose timeout must
be hard opts in to running each attempt in a child process, which is SIGKILLed at the timeout or on
a pkill: the work really stops, and the slot frees at once.

Children are spawned (never forked: the parent holds an event loop, threads and connections),
kept and reused one job at a time, and replaced after a kill. A child imports the worker's module,
so the worker must be importable by its module name (not defined in `__main__`), and its job and
return value must pickle. There is no `runtime.current()` in a child.

A job's timeout counts from the moment its child starts `perform` (it says so), as Elixir's
counts from the start of the job's own process: starting a fresh interpreter and importing the
worker's module (seconds, for a module that imports an ML library) is the isolation's cost, not
the job's. Until then the job is bounded by its timeout plus `START_ALLOWANCE`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import tracing
from .job import Job

_CONTEXT = multiprocessing.get_context("spawn")

# How long, beyond its timeout, a job may wait for its child to start it (a fresh interpreter and
# the worker module's import), before it is killed as timed out.
START_ALLOWANCE = 60.0


class ChildKilled(Exception):
    """The child died before answering: killed on purpose (timeout, pkill) or crashed."""


class Child:
    def __init__(self) -> None:
        parent, child = _CONTEXT.Pipe()
        self.conn: Connection = parent
        self.process = _CONTEXT.Process(target=_serve, args=(child,), name="oban-isolated", daemon=True)
        self.killed = False
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.killed = True  # never reused: the kill may land after it answered
        if self.process.is_alive():
            self.process.kill()

    def alive(self) -> bool:
        return not self.killed and self.process.is_alive()

    def close(self) -> None:
        self.kill()
        self.conn.close()
        self.process.join(5)


class Children:
    """Idle children, reused across jobs of every isolated worker of a node."""

    def __init__(self) -> None:
        self._idle: list[Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self, module: str, name: str, job: Job, attempt: Any, started: Callable[[], Any] | None = None) -> Any:
        """Run worker `name` (registered by importing `module`) on `job` in a child; called on a
        job thread. `attempt.child` is set while it runs, so a timeout or pkill can kill it;
        `started` is called once the child begins `perform`."""
        with self._lock:
            child = self._idle.pop() if self._idle else None
        if child is None or not child.alive():
            child = Child()
        attempt.child = child
        try:
            if attempt.stop is not None:  # asked to stop before the child was in place
                child.kill()
            child.conn.send((module, name, job, tracing.handing_over(attempt.span)))
            status, value = child.conn.recv()
            if status == "started":
                if started is not None:
                    started()
                status, value = child.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            child.close()
            raise ChildKilled(f"the isolated process running {name} ended: {exc or 'killed'}") from None
        finally:
            attempt.child = None
        with self._lock:
            reuse = not self._closed and child.alive()
            if reuse:
                self._idle.append(child)
        if not reuse:
            child.close()
        if status == "ok":
            return value
        from .executor import FormattedError

        raise FormattedError(value)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()


def _serve(conn: Connection) -> None:
    """The child's loop: one job at a time until the parent goes away."""
    from .executor import format_exception
    from .worker import lookup

    while True:
        try:
            module, name, job, carrier = conn.recv()
        except (EOFError, OSError):
            return
        try:
            importlib.import_module(module)
            spec = lookup(name)
            if spec is None:
                raise RuntimeError(f"unknown worker: {name} (not registered by importing {module})")
            conn.send(("started", None))
            with tracing.taken_over(carrier):
                result = spec.perform(job)
                if spec.is_async:
                    import asyncio

                    result = asyncio.run(result)
            reply: tuple[str, Any] = ("ok", result)
        except Exception as exc:  # noqa: BLE001 - the parent records it as the attempt's error
            reply = ("error", format_exception(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - a result that does not pickle
            conn.send(("error", f"** (ArgumentError) the result of {name} cannot be sent back: {exc}"))
