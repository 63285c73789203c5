"""oban_bridge: Python workers and inserts on Elixir Oban's PostgreSQL tables."""

from .client import AsyncObanBridge, ObanBridge
from .config import Config
from .errors import (
    DatabaseUnavailableError,
    ForeignSchemaError,
    JobCancelledError,
    ObanBridgeError,
    SchemaError,
    SchemaMissingError,
    ValidationError,
)
from .job import Job
from .unique import Unique
from .worker import Cancel, Discard, Error, Snooze, worker

__all__ = [
    "AsyncObanBridge",
    "Cancel",
    "Discard",
    "Error",
    "Snooze",
    "worker",
    "Config",
    "DatabaseUnavailableError",
    "ForeignSchemaError",
    "Job",
    "JobCancelledError",
    "ObanBridge",
    "ObanBridgeError",
    "SchemaError",
    "SchemaMissingError",
    "Unique",
    "ValidationError",
]
