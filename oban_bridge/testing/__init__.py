"""Helpers for testing code that uses oban_bridge: Oban.Testing for Python (lib/oban/testing.ex).

- `build_job` / `perform_job` (`perform_job_async`): unit-test a worker without a node or a table.
- `Testing(bridge)` / `AsyncTesting(bridge)`: `all_enqueued`, `assert_enqueued`,
  `refute_enqueued`, `drain_queue`, `drain_jobs` over the table the code under test inserts into.
- `testing="manual" | "inline"` on both clients, and `testing_mode` to switch for a block.
- A pytest plugin (`oban_bridge.testing.pytest_plugin`, loaded by entry point) with a database per
  test and clients in manual mode: `oban`, `oban_testing`, `async_oban`, `async_oban_testing`.
"""

from .attempt import STOP_WAIT
from .enqueued import WILDCARD
from .helpers import AsyncTesting, Testing
from .mode import testing_mode
from .perform import JobTimeoutError, build_job, perform_job, perform_job_async

__all__ = [
    "STOP_WAIT",
    "WILDCARD",
    "AsyncTesting",
    "JobTimeoutError",
    "Testing",
    "build_job",
    "perform_job",
    "perform_job_async",
    "testing_mode",
]
