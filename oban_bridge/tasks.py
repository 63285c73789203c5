"""Small asyncio helpers shared by the long-running loops (notifier, peer, plugins)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel(task: asyncio.Task[Any] | None, timeout: float = 5.0) -> None:
    """Cancel a loop's task and wait, for a bounded time, until it has finished unwinding.

    Bounded because a stop must end: on Python 3.11 `asyncio.wait_for` can swallow a cancellation
    that arrives as its inner wait completes (CPython gh-86296), leaving a loop running that was
    asked to stop; such a task is cancelled again, and then left behind."""
    if task is None or task.done():
        return
    for _ in range(2):
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=timeout)
        if done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("a task failed while stopping", extra={"task": task.get_name(),
                                                                  "error": repr(task.exception())})
            return
    log.warning("a task did not stop when cancelled; leaving it", extra={"task": task.get_name()})
