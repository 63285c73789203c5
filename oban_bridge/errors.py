"""Exceptions raised by oban_bridge.

Every error a caller can fix names what to fix: the option, the schema, the command to run.
"""

from __future__ import annotations


class ObanBridgeError(Exception):
    """Base class for every error oban_bridge raises on purpose."""


class ValidationError(ObanBridgeError, ValueError):
    """A job option was rejected before anything reached the database.

    Mirrors the changeset errors of `Oban.Job.new/2` (lib/oban/job.ex): one field, one reason.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"invalid {field}: {message}")


class SchemaError(ObanBridgeError):
    """The database has no Oban schema, an older one, or a schema that is not Elixir Oban's."""


class SchemaMissingError(SchemaError):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        super().__init__(
            f"no Oban tables in schema {prefix!r}: run `oban-bridge migrate --prefix {prefix}` "
            "(or Elixir's Oban.Migration.up/1) first"
        )


class ForeignSchemaError(SchemaError):
    """An `oban_jobs` table exists but was not created by Elixir Oban's migrations."""


class DatabaseUnavailableError(ObanBridgeError):
    """The PostgreSQL server could not be reached."""


class JobCancelledError(ObanBridgeError):
    """Raised by `job.check_cancelled()` once the node asked the job to stop.

    `reason` is `timeout`, `deadline`, `pkill` (cancelled from Oban Web or the CLI) or `shutdown`.
    Whatever the job does then, its outcome is the one Elixir records for that reason: a timeout
    error, a deadline or pkill cancel, or nothing at shutdown (the lifeline rescues the job)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the job was asked to stop ({reason})")
