"""An isolated worker whose module takes a second to import in its child, as a module importing
an ML library does: the start-up must not count against its 0.5 s timeout."""

from __future__ import annotations

import multiprocessing
import time

from oban_bridge import Job, worker

if multiprocessing.parent_process() is not None:  # in the isolated child only
    time.sleep(1.5)


@worker("py.SlowStart", queue="slowstart", timeout=0.5, max_attempts=1, isolation="process")
def slow_start(job: Job) -> str:
    time.sleep(float(job.args.get("seconds", 0)))
    return "done"


@worker("py.SlowStartDeadline", queue="slowdeadline", timeout=1.0, max_attempts=1, isolation="process",
        deadline={"in": 2, "force": True})
def slow_start_deadline(job: Job) -> None:
    time.sleep(30)
