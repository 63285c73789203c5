"""Stops an embedded PostgreSQL once nobody uses it, however its users ended.

Started, detached, by the process that starts the embedded server (embedded.py), and run by file
path, so it needs nothing from the package. Each user holds a shared flock on the data directory's
users file; the kernel drops it when the process ends, even by SIGKILL or SIGTERM, where `atexit`
never runs. Once a second, under the data directory's transition lock (taken first, as every user
takes it first), the janitor tries an exclusive lock on that file: when it succeeds nobody is left,
and it stops the server with a fast shutdown and exits.

    python _janitor.py DATA_DIR

embedded.py reads postmaster.pid and removes socket directories with the helpers here, so the two
agree on both.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import time

USERS_FILE = "oban_bridge.users"


def postmaster(data_dir: str) -> tuple[int, str] | None:
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            lines = f.read().splitlines()
        return int(lines[0]), lines[4]
    except (OSError, ValueError, IndexError):
        return None


def stop(data_dir: str) -> None:
    info = postmaster(data_dir)
    if info is None:
        return
    pid, socket_dir = info
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while os.path.exists(os.path.join(data_dir, "postmaster.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    remove_socket_dir(data_dir, socket_dir)


def remove_socket_dir(data_dir: str, socket_dir: str) -> None:
    """A private socket directory made for a long or odd data directory path goes with its server."""
    if socket_dir != data_dir and os.path.basename(socket_dir).startswith("oban_bridge-"):
        shutil.rmtree(socket_dir, ignore_errors=True)


def main(data_dir: str, every: float = 1.0) -> None:
    users = os.open(os.path.join(data_dir, USERS_FILE), os.O_RDWR)
    while True:
        # Only ever under the transition lock, as a releasing user checks: so the last user to
        # release sees it is the last, and stops the server itself, at once.
        transition = os.open(data_dir, os.O_RDONLY)
        try:
            fcntl.flock(transition, fcntl.LOCK_EX)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # somebody still uses it
            else:
                stop(data_dir)
                return
        finally:
            os.close(transition)
        time.sleep(every)


if __name__ == "__main__":
    main(sys.argv[1])
