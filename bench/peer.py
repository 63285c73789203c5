"""Run oban-py (the official Python port, PyPI `oban`, Python >= 3.12) beside oban_bridge.

`run_peer(server_url, params)` finds a Python >= 3.12 (pyenv's, or python3.12/3.13 on
PATH), makes a virtualenv for it once under ~/.cache/oban_bridge/, installs `oban==0.7.0` there,
and runs bench/peer_obanpy.py in it on a database of its own (oban-py installs a different schema
from Elixir's, so it never shares oban_bridge's). Returns the peer's JSON results, or None with the
reason printed when no such interpreter can be had.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

OBAN_PY = "oban==0.7.0"
HERE = Path(__file__).resolve().parent


def find_python(explicit: str | None = None) -> str | None:
    """An interpreter >= 3.12: `explicit` when given (checked, never silently replaced), else search."""
    if explicit:
        return explicit if _is_312(explicit) else None
    candidates: list[str] = []
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for pattern in ("3.13*", "3.12*"):
        candidates += sorted(glob.glob(os.path.join(root, "versions", pattern, "bin", "python3")), reverse=True)
    candidates += [p for p in (shutil.which("python3.13"), shutil.which("python3.12")) if p]
    return next((c for c in candidates if _is_312(c)), None)


def _is_312(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def peer_venv(python: str) -> Path | None:
    venv = Path(os.path.expanduser("~/.cache/oban_bridge/bench-peer-venv"))
    exe = venv / "bin" / "python"
    marker = venv / ".installed"
    # The marker names the base interpreter too, so --peer-python rebuilds the venv for a new one.
    stamp = f"{OBAN_PY} {os.path.realpath(python)}"
    if marker.exists() and marker.read_text() == stamp:
        return exe
    try:
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(exe), "-m", "pip", "install", "--quiet", OBAN_PY, "psycopg[binary]", "psycopg-pool"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        err = getattr(exc, "stderr", b"") or b""
        print(f"oban-py: could not install {OBAN_PY}: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    marker.write_text(stamp)
    return exe


def server_url(explicit: str | None) -> str:
    """--database-url, else DATABASE_URL, else the embedded PostgreSQL."""
    url = explicit or os.environ.get("DATABASE_URL")
    if url:
        return url
    from oban_bridge.embedded import embedded_url

    return embedded_url()


def database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server_url, dbname=name)


def run_peer(server_url: str, params: dict[str, Any], python: str | None = None) -> dict[str, Any] | None:
    interpreter = find_python(python)
    if interpreter is None:
        why = f"{python} is not a Python >= 3.12" if python else "no Python >= 3.12 found (pass --peer-python)"
        print(f"oban-py: skipped, {why}", file=sys.stderr)
        return None
    exe = peer_venv(interpreter)
    if exe is None:
        return None
    url = database(server_url, "bench_obanpy")
    out = subprocess.run(
        [str(exe), str(HERE / "peer_obanpy.py"), url, json.dumps(params)],
        capture_output=True, text=True, timeout=4 * 3600,
    )
    if out.returncode != 0:
        print(f"oban-py: the peer run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
