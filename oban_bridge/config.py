"""Where the database is and which Oban instance we are, resolved once.

The URL comes from the caller, then `DATABASE_URL`; with neither, the embedded PostgreSQL
(PostgreSQL 16 from a wheel) is started in a per-user data directory (see `embedded.py`).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

DEFAULT_PREFIX = "public"
# The Oban instance name Python nodes run under: never Elixir's own ("Oban"), see peer.py.
DEFAULT_NAME = "ObanBridge"

_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^/@:]*:)(?P<password>[^@/]*)(?P<tail>@)")
_PASSWORD_IN_DSN = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


def mask_password(url: str) -> str:
    """Hide the password of a URL or key=value DSN, for logs and error messages."""
    masked = _PASSWORD_IN_URL.sub(r"\g<head>***\g<tail>", url)
    return _PASSWORD_IN_DSN.sub(r"\g<head>***", masked)


def default_node() -> str:
    """Oban's default node name is the host name (lib/oban/config.ex `node_name/1`)."""
    return os.environ.get("DYNO") or socket.gethostname()


def validate_prefix(prefix: str) -> str:
    """A prefix is a PostgreSQL schema name; it is always quoted, never interpolated raw."""
    if not isinstance(prefix, str) or not prefix or len(prefix.encode()) > 63 or "\x00" in prefix:
        raise ValueError(f"invalid prefix {prefix!r}: expected a schema name of 1 to 63 bytes")
    return prefix


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    name: str = DEFAULT_NAME
    node: str = field(default_factory=default_node)

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def resolved_url(self) -> str:
        """The URL to connect to, starting the embedded server when none is configured."""
        url = self.database_url or os.environ.get("DATABASE_URL")
        if url:
            return url
        from .embedded import embedded_url

        return embedded_url()
