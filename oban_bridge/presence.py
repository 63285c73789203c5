"""The presence of this node's producers, which the lifeline's orphan rescue looks for.

A producer is alive while some session holds its presence lock (queries/producer_presence.sql);
`rescue_orphans.sql` returns the `executing` jobs of producers whose lock is gone. The locks live
on one connection of their own, not on the connections that fetch jobs:

- it is taken again at once after it drops (a failover, a PgBouncer restart,
  `pg_terminate_backend`: the thread waits on the socket, so it sees the server close it) and
  checked by a heartbeat against silent network loss, whatever the queues are doing; the
  producers' pooled connections take the same locks when they connect (runtime.py), so the node
  stays present while any of its connections lives;
- it runs on a thread, so it outlives the event loop: a plain-`def` job that ignored its timeout or
  the shutdown still runs, and while it does, its job must not be rescued and run a second time.
  The locks go when the last such thread returns, or with the process.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from .db import load_query

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, url: str, uuids: Sequence[str], *, busy: Callable[[], int] = lambda: 0,
                 heartbeat: float = 5.0) -> None:
        self.url = url
        self.uuids = list(uuids)
        self.busy = busy
        self.heartbeat = heartbeat
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="oban-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let go of the locks once no job thread is inside a job; returns at once."""
        self._stop.set()
        if self._thread is not None:
            os.write(self._wakeup_w, b"x")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.05
        try:
            while not (self._stop.is_set() and self.busy() == 0):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                        self._conn.execute(load_query("presence_keepalive"))
                        for uuid in self.uuids:
                            self._conn.execute(load_query("producer_presence"), {"uuid": uuid})
                        self.connected.set()
                    else:
                        self._conn.execute("SELECT 1")
                    delay = 0.05
                except psycopg.Error as exc:
                    log.warning("presence connection lost, reconnecting",
                                extra={"error": str(exc).strip(), "retry_in": delay})
                    self._close()
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._wait()
        finally:
            self._close()
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)

    def _wait(self) -> None:
        """Until the heartbeat is due, the server says something (a terminated backend sends its
        FATAL and closes: we reconnect at once, not a heartbeat later), or stop() is called; once
        stopping, poll the job threads a few times a second."""
        timeout = 0.2 if self._stop.is_set() else self.heartbeat
        assert self._conn is not None
        readable, _, _ = select.select([self._conn.fileno(), self._wakeup_r], [], [], timeout)
        if self._wakeup_r in readable:
            os.read(self._wakeup_r, 64)

    def _close(self) -> None:
        self.connected.clear()
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
