"""The embedded PostgreSQL used when no DATABASE_URL is given.

`pgserver` ships PostgreSQL binaries in a wheel, so a fresh machine needs nothing but pip. The data
directory lives in the per-user data dir and is reused across runs; pgserver reference-counts the
processes using it and stops the server when the last one exits.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}


def data_dir() -> Path:
    explicit = os.environ.get("OBAN_BRIDGE_EMBEDDED_DIR")
    if explicit:
        return Path(explicit)
    from platformdirs import user_data_dir

    return Path(user_data_dir("oban_bridge")) / "pgdata"


def start(path: Path | None = None, *, announce: bool = True) -> Any:
    """Start (or attach to) the embedded server whose data lives in `path`."""
    path = (path or data_dir()).resolve()
    server = _servers.get(path)
    if server is not None:
        return server
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir it does not need; on machines without
        # XDG_RUNTIME_DIR that warns on every start.
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DatabaseUnavailableError(
                "no DATABASE_URL is set and the embedded PostgreSQL is not installed: "
                "`pip install 'oban_bridge[embedded]'` or set DATABASE_URL"
            ) from exc
        server = pgserver.get_server(path)  # type: ignore[attr-defined]
    _servers[path] = server
    if announce:
        print(f"oban_bridge: embedded PostgreSQL with data in {path}", file=sys.stderr)
    log.info("embedded postgres started", extra={"data_dir": str(path)})
    return server


def embedded_url(path: Path | None = None) -> str:
    return str(start(path).get_uri())
