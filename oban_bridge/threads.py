"""Long-lived threads for plain-`def` jobs, handed work one queue put at a time and handing results
back to the event loop in bursts.

`loop.run_in_executor` costs a concurrent Future, a chained asyncio Future and a loop wake-up per
job (~30 µs, notes/throughput_profile.md). Here a job is one `SimpleQueue.put`, and a thread that
finishes one schedules a single callback on the loop unless one is already pending, so a burst of
jobs finishing together costs one wake-up. A thread is never taken from a job that overran its
timeout: Python cannot kill one, so the job keeps its thread (and the producer its slot) until it
really returns; there is always a thread per running job, started on demand.

Once the node has stopped (`drain(detach=True)`), a job that returns after all is handed to its `late`
callback on its own thread, which records it while the node's presence still covers the job.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

Done = Callable[[Any, BaseException | None], None]
_Item = tuple[Callable[[Any], Any], Any, Done, Done | None]


class JobThreads:
    def __init__(self, name: str = "oban-job") -> None:
        self.name = name
        self._work: SimpleQueue[_Item | None] = SimpleQueue()
        self._finished: deque[tuple[Done, Done | None, Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._detached = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        # One flag per thread, written only by that thread: whether it is inside a job (or still
        # recording one late). Readable from any thread; Presence waits on it.
        self._in_job: list[bool] = []
        self._submitted = 0  # jobs handed over and not yet handed back (event loop thread only)

    def submit(self, fn: Callable[[Any], Any], arg: Any, done: Done, late: Done | None = None) -> None:
        """Run `fn(arg)` on a job thread; `done(result, error)` runs later on the event loop (or
        `late` on the job thread, after `detach`). Call from the event loop thread only. Job
        threads run in a copy of the context they were started from (the runtime's), so
        `runtime.current()` works in plain-def jobs."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._submitted += 1
        if self._submitted > len(self._threads):
            self._spawn()
        self._work.put((fn, arg, done, late))

    def busy(self) -> int:
        """Threads inside a job right now, from any thread."""
        return sum(self._in_job)

    def drain(self, *, detach: bool = False) -> None:
        """Hand back every job that has finished (event loop thread). With `detach` (the node is
        stopping, its producers can still write): from then on a job that returns is recorded by
        its `late` callback on its own thread instead."""
        with self._lock:
            self._scheduled = False
            self._detached = self._detached or detach
            items = list(self._finished)
            self._finished.clear()
        self._submitted -= len(items)
        for done, _, result, error in items:
            done(result, error)

    def shutdown(self) -> None:
        """Idle threads exit; a thread still inside a job exits when the job returns."""
        for _ in self._threads:
            self._work.put(None)
        for index, thread in enumerate(self._threads):
            if not self._in_job[index]:
                thread.join(1.0)  # so that only threads still inside a job outlive the node
        self._threads.clear()

    def _spawn(self) -> None:
        index = len(self._in_job)
        self._in_job.append(False)
        # Daemon: a job that ignores every request to stop must not keep the process alive
        # forever; its row stays `executing` for the lifeline, as Elixir leaves a killed node's.
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(self._serve, index), name=f"{self.name}-{index}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, index: int) -> None:
        get, finished, in_job, lock = self._work.get, self._finished, self._in_job, self._lock
        while True:
            item = get()
            if item is None:
                return
            fn, arg, done, late = item
            in_job[index] = True
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # noqa: BLE001 - handed back, never lost here
                result, error = None, exc
            with lock:
                detached = self._detached
                schedule = False
                if not detached:
                    finished.append((done, late, result, error))
                    schedule, self._scheduled = not self._scheduled, True
            if detached:
                if late is not None:
                    try:
                        late(result, error)
                    except Exception:  # noqa: BLE001 - never kill the thread over a record
                        pass
            elif schedule and self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self.drain)
                except RuntimeError:  # the loop closed without detaching us: nothing to hand to
                    pass
            in_job[index] = False
            del item, fn, arg, done, late, result, error
