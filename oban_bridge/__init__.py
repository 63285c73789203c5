"""oban_bridge: Python workers and inserts on Elixir Oban's PostgreSQL tables."""

from .client import AsyncObanBridge, ObanBridge
from .config import Config
from .errors import (
    DatabaseUnavailableError,
    ForeignSchemaError,
    ObanBridgeError,
    SchemaError,
    SchemaMissingError,
    ValidationError,
)
from .job import Job
from .unique import Unique

__all__ = [
    "AsyncObanBridge",
    "Config",
    "DatabaseUnavailableError",
    "ForeignSchemaError",
    "Job",
    "ObanBridge",
    "ObanBridgeError",
    "SchemaError",
    "SchemaMissingError",
    "Unique",
    "ValidationError",
]
