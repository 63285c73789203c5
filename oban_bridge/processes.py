"""One node per process, so CPU-bound Python jobs use every core.

Threads in one Python process share one GIL: a queue with limit 10 of CPU-bound `def` jobs still
computes on one core. Elixir gets its cores from the BEAM schedulers; we get them from more nodes.
`run(make_node, processes=N)` starts N child processes (spawned, not forked: a fork would copy
open connections and locks), each a complete node built by `make_node(index)` — its own producers,
producer uuids and presence lock, its own connections — on the same queues. Queue limits stay per
node like Oban's `:limit` (a local limit), so N processes run up to N × limit jobs at once.

A child that dies is started again, with backoff; the jobs it was running are rescued by the
lifeline of the survivors once its presence lock is gone and the orphan grace has passed (see
plugins/lifeline.py), like an Elixir node that crashed. SIGTERM or SIGINT to the parent stops every
child gracefully; a second one ends their grace at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import ObanBridge

log = logging.getLogger("oban_bridge.processes")

# A child that exits within this many seconds of starting failed to start (bad settings, schema
# missing, database down): after QUICK_FAILURES of those in a row the parent gives up.
QUICK_EXIT = 10.0
QUICK_FAILURES = 5
MAX_BACKOFF = 30.0


# Each node holds a few connections (producers, plugins, notifier, presence): more processes
# than this would exhaust any PostgreSQL's max_connections long before they helped.
MAX_PROCESSES = 256

# A child whose settings cannot work (a metrics port it cannot serve on) exits with this code
# (sysexits' EX_CONFIG): starting it again would fail the same way, so the parent stops at once.
EXIT_CONFIG = 78


def parse_processes(text: str | int) -> int:
    """`--processes`: a positive number (at most MAX_PROCESSES), or `auto` for one per CPU core."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        count = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"processes must be a positive integer or 'auto', got {text!r}") from None
    if count < 1:
        raise ValueError(f"processes must be a positive integer or 'auto', got {text!r}")
    if count > MAX_PROCESSES:
        raise ValueError(f"processes must be at most {MAX_PROCESSES} (each node holds its own database "
                         f"connections), got {text!r}")
    return count


def node_name(base: str, index: int, processes: int) -> str:
    """Each process is its own node in attempted_by and in Oban Web: `host-1`, `host-2`, ..."""
    return base if processes == 1 else f"{base}-{index + 1}"


def run_node(make_node: Callable[[int], ObanBridge], index: int, parent: int | None = None) -> None:
    """The body of one child: build the node, run it until SIGTERM, leave.

    A terminal's Ctrl-C reaches the whole process group. Children ignore SIGINT and take their
    signals from the parent alone, which forwards each one as SIGTERM, so one Ctrl-C is one
    graceful stop and a second ends the grace at once, wherever it was sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so since exec (start_ignoring_sigint)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since exec; now ignored
    watch_parent(parent)
    from .errors import ValidationError

    try:
        bridge = make_node(index)
    except ValidationError as exc:
        print(f"oban-bridge: node process {index + 1}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    bridge.run(signals=(signal.SIGTERM,))
    exit_past_stuck_jobs()


def watch_parent(parent: int | None = None, interval: float = 1.0) -> None:
    """A parent killed with SIGKILL cannot stop its children: each child stops itself gracefully
    (SIGTERM to itself, as `run` would have sent) once it has been orphaned, rather than run on
    as a node nobody supervises. `parent` is the pid the parent gave: read here, getppid() of a
    child whose parent died while it was starting is already the reaper's, and it would run on."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="oban-bridge-parent-watch", daemon=True).start()


def start_ignoring_sigint(child: BaseProcess) -> None:
    """Start a spawned child with SIGINT ignored from its first instruction: an ignored signal
    stays ignored across exec, and Python then leaves it so. A Ctrl-C to the group while the child
    is still importing is then no KeyboardInterrupt traceback from a child not yet listening.

    The parent's own SIGINT is blocked meanwhile, so a Ctrl-C landing in those milliseconds stays
    pending (Linux never discards a blocked signal) and reaches the parent's handler afterwards,
    instead of being thrown away by the moment's SIG_IGN. multiprocessing's resource tracker
    unblocks SIGINT when it first starts, so it is started before the window."""
    before = None
    if hasattr(signal, "pthread_sigmask"):
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    ours = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child.start()
    finally:
        signal.signal(signal.SIGINT, ours)
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


def exit_past_stuck_jobs() -> None:
    """A plain-def job that ignores shutdown cannot be killed in Python; its row stays executing
    for the lifeline. It must not hold the process past the grace period."""
    stuck = [t for t in threading.enumerate() if t.name.startswith("oban-job") and t.is_alive()]
    if stuck:
        print(f"oban-bridge: {len(stuck)} job thread(s) still running after the grace period; "
              "leaving their jobs to the lifeline", file=sys.stderr)
        from . import logs

        logs.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run(make_node: Callable[[int], ObanBridge], processes: int | str, *, stop_timeout: float = 60.0,
        backoff: float = 0.5) -> int:
    """Run `processes` nodes, each `make_node(index)` in a child process, until SIGTERM/SIGINT.

    `make_node` must be picklable (a module-level function or a functools.partial of one): it is
    sent to spawned children. Returns 0 after a requested stop, 1 when children kept failing to
    start, 2 when one refused its settings (EXIT_CONFIG). A child that exits is started again after `backoff` seconds, doubling while children
keep exiting right after they start (up to 30 s). `stop_timeout` bounds the wait for children after the stop (their own grace period
    comes first); a child still alive then is killed and its jobs left to the lifeline.
    """
    processes = parse_processes(processes)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    children: dict[int, BaseProcess] = {}

    def on_signal(*_: object) -> None:
        if stopping.is_set():  # a second signal: pass it on, so the children end their grace now
            for child in children.values():
                if child.is_alive() and child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started_at: dict[int, float] = {}
    quick_failures = 0
    restart_at: dict[int, float] = {}

    def spawn(index: int) -> None:
        child = context.Process(target=run_node, args=(make_node, index, os.getpid()),
                                name=f"oban-bridge-node-{index + 1}")
        start_ignoring_sigint(child)
        children[index], started_at[index] = child, time.monotonic()
        log.info("node process started", extra={"index": index + 1, "pid": child.pid})

    status = 0
    try:
        for index in range(processes):
            if stopping.is_set():
                break  # a stop while still starting them: start no more
            spawn(index)
        while not stopping.is_set():
            stopping.wait(0.2)
            now = time.monotonic()
            for index, child in list(children.items()):
                if stopping.is_set():
                    break
                if index in restart_at:
                    if now >= restart_at[index]:
                        del restart_at[index]
                        spawn(index)
                    continue
                if child.is_alive():
                    continue
                if child.exitcode == EXIT_CONFIG:  # it said why (one line): no restart can help
                    log.error("node process refused its settings; stopping", extra={"index": index + 1})
                    status = 2
                    stopping.set()
                    break
                lived = now - started_at[index]
                quick_failures = quick_failures + 1 if lived < QUICK_EXIT else 0
                if quick_failures >= QUICK_FAILURES:
                    log.error("node processes keep failing to start; stopping",
                              extra={"exitcode": child.exitcode, "failures": quick_failures})
                    print(f"oban-bridge: node processes exited {quick_failures} times in a row within "
                          f"{QUICK_EXIT:.0f}s of starting (last exit code {child.exitcode}); giving up",
                          file=sys.stderr)
                    status = 1
                    stopping.set()
                    break
                delay = min(MAX_BACKOFF, backoff * 2 ** quick_failures)
                log.warning("node process exited; starting it again",
                            extra={"index": index + 1, "exitcode": child.exitcode, "delay": delay})
                restart_at[index] = now + delay
    finally:
        for child in children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        for child in children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.error("node process did not stop in time; killing it", extra={"pid": child.pid})
                child.kill()
                child.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
