"""The loops oban_bridge makes: uvloop when installed (the test extras install it), asyncio on request."""

from __future__ import annotations

import asyncio
import time

import pytest

from oban_bridge import ObanBridge, loop


def test_uvloop_when_installed_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("OBAN_BRIDGE_LOOP", raising=False)
    assert loop.loop_factory() is uvloop.new_event_loop and loop.name() == "uvloop"
    monkeypatch.setenv("OBAN_BRIDGE_LOOP", "asyncio")
    assert loop.loop_factory() is asyncio.new_event_loop and loop.name() == "asyncio"


def test_run_drives_a_coroutine_on_that_loop() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(which()).startswith("uvloop" if loop.name() == "uvloop" else "asyncio")


def test_the_sync_facade_runs_jobs_on_uvloop(db_url: str) -> None:
    from oban_bridge import Job

    from .test_runtime import count

    with ObanBridge(db_url, queues={"badges": 5}, plugins=[]) as oban:
        oban.insert_all([Job.new("py.AsyncCount", {}, queue="badges") for _ in range(20)])
        assert oban._loop is not None and type(oban._loop).__module__.startswith(loop.name())
        deadline = time.monotonic() + 30
        while count(db_url, "state = 'completed'") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert count(db_url, "state = 'completed'") == 20
