"""Long-lived threads for plain-`def` jobs, handed work one queue put at a time and handing results
back to the event loop in bursts.

`loop.run_in_executor` costs a concurrent Future, a chained asyncio Future and a loop wake-up per
job (~30 µs, notes/throughput_profile.md). Here a job is one `SimpleQueue.put`, and a thread that
finishes one schedules a single callback on the loop unless one is already pending, so a burst of
jobs finishing together costs one wake-up. A thread is never taken from a job that overran its
timeout: Python cannot kill one, so the job keeps its thread (and the producer its slot) until it
really returns; there is always a thread per running job, started on demand.
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
_Item = tuple[Callable[[Any], Any], Any, Done]


class JobThreads:
    def __init__(self, name: str = "oban-job") -> None:
        self.name = name
        self._work: SimpleQueue[_Item | None] = SimpleQueue()
        self._finished: deque[tuple[Done, Any, BaseException | None]] = deque()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        # One flag per thread, written only by that thread: whether it is inside a job. Readable
        # from any thread after the loop has stopped (Presence waits on it).
        self._in_job: list[bool] = []
        self._submitted = 0  # jobs handed over and not yet handed back (event loop thread only)

    def submit(self, fn: Callable[[Any], Any], arg: Any, done: Done) -> None:
        """Run `fn(arg)` on a job thread; `done(result, error)` runs later on the event loop. Call
        from the event loop thread only. Job threads run in a copy of the context they were
        started from (the runtime's), so `runtime.current()` works in plain-def jobs."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._submitted += 1
        if self._submitted > len(self._threads):
            self._spawn()
        self._work.put((fn, arg, done))

    def run(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        """`submit` as an awaitable, for the job paths that are coroutines anyway."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self.submit(fn, arg, done)
        return future

    def busy(self) -> int:
        """Threads inside a job right now, from any thread."""
        return sum(self._in_job)

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
        get, finished, in_job = self._work.get, self._finished, self._in_job
        while True:
            item = get()
            if item is None:
                return
            fn, arg, done = item
            in_job[index] = True
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, never lost here
                result, error = None, exc
            in_job[index] = False
            finished.append((done, result, error))
            # Order matters: append, then read the flag. _drain clears the flag before it reads the
            # deque, so whatever this thread appended is either drained now or scheduled again.
            if not self._scheduled:
                self._scheduled = True
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(self._drain)
                    except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                        pass
            del item, fn, arg, done, result, error

    def _drain(self) -> None:
        self._scheduled = False
        finished = self._finished
        while finished:
            done, result, error = finished.popleft()
            self._submitted -= 1
            done(result, error)
