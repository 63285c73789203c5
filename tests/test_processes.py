"""`start --processes N`: one node per process, so CPU-bound jobs use every core; children that
die are started again, a stop reaches every child, and no job runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oban_bridge import Job, ObanBridge
from oban_bridge.processes import MAX_PROCESSES, node_name, parse_processes, run

from .test_reliability import ROOT, ledger_counts, ledger_table
from .test_runtime import count, wait_for


@given(st.integers(min_value=1, max_value=MAX_PROCESSES))
def test_processes_accepts_positive_counts(n: int) -> None:
    assert parse_processes(str(n)) == n == parse_processes(n)


@given(st.integers(min_value=MAX_PROCESSES + 1))
def test_processes_past_the_cap_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_PROCESSES}"):
        parse_processes(str(n))


@given(st.one_of(st.integers(max_value=0), st.text().filter(lambda t: not t.strip().isdigit()
                                                            and t.strip().lower() != "auto")))
def test_processes_rejects_everything_else(value: int | str) -> None:
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        parse_processes(value)


def test_auto_is_one_per_core_and_nodes_are_numbered() -> None:
    assert parse_processes("auto") == parse_processes("AUTO ") == (os.cpu_count() or 1)
    assert node_name("host", 0, 1) == "host"
    assert [node_name("host", i, 3) for i in range(3)] == ["host-1", "host-2", "host-3"]


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def spawned_nodes(pid: int) -> set[int]:
    """The node processes: multiprocessing also starts a resource tracker, which is no node."""
    return {c for c in children(pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()}


async def test_two_processes_share_the_queue_restart_a_killed_child_and_stop_together(db_url: str) -> None:
    ledger_table(db_url)
    with ObanBridge(db_url) as client:
        client.insert_all([Job.new("py.Ledger", {"sleep": 0.02}, queue="ledger") for _ in range(300)])
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "ledger:5", "--node", "multi",
         "--processes", "2", "--grace", "5"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        await wait_for(lambda: count(db_url, "state = 'completed'") == 300, timeout=90)
        with psycopg.connect(db_url) as conn:
            nodes = {r[0] for r in conn.execute("SELECT DISTINCT attempted_by[1] FROM oban_jobs")}
        assert nodes == {"multi-1", "multi-2"}
        first = spawned_nodes(parent.pid)
        assert len(first) == 2
        os.kill(min(first), signal.SIGKILL)
        await wait_for(lambda: len(spawned_nodes(parent.pid) - first) == 1, timeout=30)
        with ObanBridge(db_url) as client:
            client.insert_all([Job.new("py.Ledger", {}, queue="ledger") for _ in range(100)])
        await wait_for(lambda: count(db_url, "state = 'completed'") == 400, timeout=60)
        survivors = spawned_nodes(parent.pid)
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(60)
    assert code == 0, parent.stderr.read() if parent.stderr else ""
    assert not any(Path(f"/proc/{pid}").exists() and b"oban" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in survivors)  # the stop reached every child
    counts = ledger_counts(db_url)
    assert len(counts) == 400 and set(counts.values()) == {1}


def failing_node(index: int) -> ObanBridge:
    raise RuntimeError("this node cannot start")


def test_children_that_keep_failing_to_start_make_the_parent_give_up() -> None:
    t0 = time.monotonic()
    assert run(failing_node, 2, backoff=0.01) == 1
    assert time.monotonic() - t0 < 60


def test_cli_rejects_a_bad_process_count() -> None:
    from click.testing import CliRunner

    from oban_bridge.cli import main

    result = CliRunner().invoke(main, ["--database-url", "postgresql://nowhere/x", "start", "-m", "tests.workers",
                                       "-q", "ledger:2", "--processes", "0"])
    assert result.exit_code == 2
    assert "processes must be a positive integer or 'auto'" in result.output


async def test_children_stop_themselves_when_the_parent_is_killed(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "ledger:2", "--node", "orphan",
         "--processes", "2", "--grace", "2"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: len(spawned_nodes(parent.pid)) == 2, timeout=30)
        nodes = spawned_nodes(parent.pid)
        await asyncio.sleep(1.0)  # let the nodes reach their running state
    finally:
        parent.kill()
        parent.wait(10)

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    await wait_for(lambda: not any(alive(pid) for pid in nodes), timeout=30)


def _wait_state(db_url: str, job_id: int, state: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job_id]).fetchone()
        if row and row[0] == state:
            return
        assert time.monotonic() < deadline and proc.poll() is None, f"job {job_id} never {state}"
        time.sleep(0.1)


@pytest.mark.parametrize("after", [0.1, 0.2, 0.3])
def test_a_ctrl_c_while_a_child_is_still_starting_is_a_quiet_graceful_stop(db_url: str, after: float) -> None:
    """A terminal's Ctrl-C can land while a child is still importing, before it could ignore
    SIGINT: it must be one graceful stop, with no KeyboardInterrupt traceback from that child."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "slowgroup:1",
         "--processes", "2", "--grace", "5"],
        env={**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "node process started" in line and "index=2" in line:
                time.sleep(after)  # into the second child's imports (about 0.5 s in all)
                os.killpg(proc.pid, signal.SIGINT)
                break
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(seen) + (proc.stderr.read() if proc.stderr else "")
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


LOST_SIGINT = """
import os, signal, sys, threading, time
from multiprocessing.context import SpawnProcess
from oban_bridge import processes

class Idle:
    def run(self, signals):
        stop = threading.Event()
        for sig in signals:
            signal.signal(sig, lambda *_: stop.set())
        stop.wait(60)

def make(index):
    return Idle()

real_start = SpawnProcess.start

def start(self):
    if self.name.endswith("-2"):
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C landing while the second child starts
    return real_start(self)

if __name__ == "__main__":
    SpawnProcess.start = start
    began = time.monotonic()
    status = processes.run(make, 2, stop_timeout=20)
    print("exit", status, round(time.monotonic() - began, 1))
"""


def test_a_ctrl_c_to_the_parent_while_it_starts_a_child_is_not_lost(tmp_path: Path) -> None:
    """The parent ignores SIGINT for the moment a child is spawned (so the child starts ignoring
    it); a Ctrl-C in that moment must still stop the run, not vanish."""
    script = tmp_path / "lost_sigint.py"
    script.write_text(LOST_SIGINT)
    done = subprocess.run([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stderr
    status, seconds = done.stdout.split()[1:]
    assert status == "0" and float(seconds) < 15, done.stdout + done.stderr


def test_one_ctrl_c_to_the_group_is_one_graceful_stop_and_a_second_signal_to_the_parent_ends_it(db_url: str) -> None:
    """A terminal's Ctrl-C reaches the parent and every child at once: that is one stop (the running
    job keeps its grace), and a second signal, even to the parent alone, ends the grace at once."""
    import tempfile

    with ObanBridge(db_url) as client:
        job = client.insert(Job.new("py.LongSleep", {"seconds": 40}, queue="slowgroup"))
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "slowgroup:1",
             "--processes", "2", "--grace", "60"],
            env={**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True)
        try:
            _wait_state(db_url, job.id, "executing", proc)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
            time.sleep(2.0)
            assert proc.poll() is None  # still in the grace, waiting for the job
            with psycopg.connect(db_url) as conn:
                assert conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job.id]).fetchone() \
                    == ("executing",)
            proc.send_signal(signal.SIGTERM)  # the second one, to the parent alone
            code = proc.wait(20)  # the grace is 60 s
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.seek(0)
        text = err.read()
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


def test_processes_with_a_missing_schema_or_table_is_one_line_not_a_traceback_per_child(db_url: str) -> None:
    for extra, message in ((["--prefix", "nosuch"], "no Oban tables in schema 'nosuch'"),
                           (["-q", "lq:local=2,global=3"], "oban-bridge migrate --limits")):
        result = subprocess.run(
            [sys.executable, "-m", "oban_bridge", "--database-url", db_url, "start", "-m", "tests.workers",
             "-q", "ledger:2", "--processes", "2", *extra],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3, result.stderr


def _orphan_body(parent: int) -> None:
    from oban_bridge.processes import watch_parent

    watch_parent(parent, interval=0.05)
    time.sleep(30)  # SIGTERM from watch_parent ends this


def test_a_child_whose_parent_died_while_it_started_stops_itself() -> None:
    """The parent's pid is handed over, not read in the child: a child whose parent died before it
    looked would read the reaper's pid as its parent's, and run on unsupervised."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_orphan_body, args=(1 << 22,))  # a pid not its parent's
    started = time.monotonic()
    child.start()
    child.join(20)
    assert not child.is_alive() and child.exitcode == -signal.SIGTERM
    assert time.monotonic() - started < 20
