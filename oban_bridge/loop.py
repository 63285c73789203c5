"""The event loop oban_bridge creates for itself: uvloop when it is installed.

uvloop (`pip install oban_bridge[fast]`) runs the same asyncio code with a libuv loop whose socket
and callback handling is faster than the default loop's; psycopg's async connections work on it
unchanged. Only the loops oban_bridge makes use it — the sync facade's runtime thread and the CLI;
an application that runs the async API brings its own loop. `OBAN_BRIDGE_LOOP=asyncio` opts out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if os.environ.get("OBAN_BRIDGE_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    return loop_factory()()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the loop above."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def name() -> str:
    """Which loop is in use, for benchmarks and logs."""
    return "uvloop" if loop_factory() is not asyncio.new_event_loop else "asyncio"
