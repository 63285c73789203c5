"""The embedded PostgreSQL, seen from outside: a data directory is made once and reused, the server
is shared by every process using it and stopped by the last one, and directories it cannot open are
refused with what to do. Runs whichever package supplies the binaries on this Python."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oban_bridge import embedded
from oban_bridge.embedded import EmbeddedServerError, MajorVersionMismatch

ROOT = Path(__file__).resolve().parent.parent

USER = """
import sys
from pathlib import Path
from oban_bridge import embedded
server = embedded.start(Path(sys.argv[1]), announce=False)
print(server.pid, flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp: the socket lives in the data directory and its path must stay short.
    root = Path(tempfile.mkdtemp(prefix="obe", dir="/tmp"))
    yield root / "pgdata"
    shutil.rmtree(root, ignore_errors=True)


def user_process(path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", USER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip(), f"user process exited with {proc.wait()}"
    return proc, int(line)


def leave(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(60) == 0


def alive(pid: int) -> bool:
    # Not os.kill(pid, 0): a stopped postmaster lingers as a zombie where nothing reaps orphans.
    try:
        return "(zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_a_new_directory_is_initialised_and_its_data_survives_a_restart(data_dir: Path) -> None:
    server = embedded.start(data_dir, announce=False)
    assert (data_dir / "PG_VERSION").read_text().strip() == server.binaries.major == "16"
    with psycopg.connect(server.uri, autocommit=True) as conn:
        assert conn.info.server_version // 10000 == 16
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('before')")
    first_pid = server.pid
    assert first_pid is not None
    server.release()
    assert server.pid is None and not alive(first_pid)

    again = embedded.start(data_dir, announce=False)
    try:
        with psycopg.connect(again.uri) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("before",)]
    finally:
        again.release()


def test_processes_share_one_server_and_the_last_one_out_stops_it(data_dir: Path) -> None:
    first, pid = user_process(data_dir)
    second, attached = user_process(data_dir)
    assert attached == pid
    leave(first)
    assert alive(pid), "the server stopped while another process still used it"
    leave(second)
    assert not alive(pid) and not (data_dir / "postmaster.pid").exists()


def wait_until(check: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_server_stops_when_its_last_user_dies_without_cleaning_up(data_dir: Path, sig: int) -> None:
    """No atexit runs on SIGKILL, nor on SIGTERM without a handler: the janitor stops the server."""
    user, pid = user_process(data_dir)
    user.send_signal(sig)
    user.wait()
    assert wait_until(lambda: not alive(pid)), "the server outlived its last user"


def test_a_killed_user_is_not_counted_while_others_remain(data_dir: Path) -> None:
    killed, pid = user_process(data_dir)
    server = embedded.start(data_dir, announce=False)
    assert server.pid == pid
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(0.5)
    assert alive(pid), "the server stopped under a live user"
    with psycopg.connect(server.uri) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    server.release()
    assert not alive(pid)


def test_a_first_start_killed_midway_starts_over(data_dir: Path) -> None:
    """What a first start killed during initdb or the move leaves behind (no PG_VERSION, a
    scratch directory, part of a cluster) is ours: it is cleared and the cluster made whole."""
    (data_dir / ".initdb" / "base").mkdir(parents=True)
    (data_dir / "global").mkdir()
    (data_dir / "postgresql.conf").write_text("# half written\n")
    server = embedded.start(data_dir, announce=False)
    try:
        with psycopg.connect(server.uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not (data_dir / ".initdb").exists()
    finally:
        server.release()


def test_the_server_is_started_again_after_it_stopped_under_a_user(data_dir: Path) -> None:
    server = embedded.start(data_dir, announce=False)
    try:
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)  # fast shutdown, as a crash or an operator would
        for _ in range(100):
            if server.pid is None:
                break
            time.sleep(0.05)
        server.ensure_running()
        with psycopg.connect(server.uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert server.pid != pid
    finally:
        server.release()


@pytest.mark.parametrize("name", [("d" * 60) + "/with space", "dollar$HOME`touch pwned`\"quote'"])
def test_long_or_odd_paths_work_through_a_private_socket_directory(name: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="obe", dir="/tmp"))
    deep = root / name / "pgdata"
    try:
        server = embedded.start(deep, announce=False)
        try:
            with psycopg.connect(server.uri) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
                socket_dir = Path(conn.info.host)
            assert socket_dir != deep and socket_dir.name.startswith("oban_bridge-")
            # Trust auth makes the socket the superuser's door: only its owner may use it.
            assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
            assert stat.S_IMODE((socket_dir / ".s.PGSQL.5432").stat().st_mode) & 0o077 == 0
        finally:
            server.release()
        assert not socket_dir.exists()
        assert not list(root.rglob("pwned")) and not (ROOT / "pwned").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_another_major_versions_directory_is_refused_with_what_to_do(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("17\n")
    with pytest.raises(MajorVersionMismatch) as caught:
        embedded.start(data_dir, announce=False)
    text = str(caught.value)
    assert "PostgreSQL 17 data directory" in text and "PostgreSQL 16." in text
    assert embedded.DIR_ENV in text and embedded.BIN_ENV in text and "DATABASE_URL" in text
    assert sorted(p.name for p in data_dir.iterdir()) == ["PG_VERSION"]  # nothing written


def test_a_directory_holding_something_else_is_refused(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedServerError, match="neither empty nor a PostgreSQL data directory"):
        embedded.start(data_dir, announce=False)
    assert (data_dir / "notes.txt").read_text() == "mine"


def test_binaries_named_by_the_variable_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(embedded.BIN_ENV, str(tmp_path))
    embedded.find_binaries.cache_clear()
    try:
        with pytest.raises(EmbeddedServerError, match="no PostgreSQL server program"):
            embedded.find_binaries()
    finally:
        monkeypatch.delenv(embedded.BIN_ENV)
        embedded.find_binaries.cache_clear()


@pytest.mark.skipif(shutil.which("true") is None or sys.version_info >= (3, 12),
                    reason="pgserver itself installs on Python 3.11 only here")
def test_a_directory_made_by_pgserver_keeps_working(data_dir: Path) -> None:
    """Earlier oban_bridge releases ran pgserver's own server; its data directory is reused."""
    import pgserver

    old = pgserver.get_server(data_dir, cleanup_mode="stop")
    with psycopg.connect(old.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE TABLE demo_rows (v int)")
        conn.execute("INSERT INTO demo_rows VALUES (1)")
    old.cleanup()

    server = embedded.start(data_dir, announce=False)
    try:
        with psycopg.connect(server.uri) as conn:
            assert conn.execute("SELECT v FROM demo_rows").fetchall() == [(1,)]
    finally:
        server.release()
