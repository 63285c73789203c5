"""PostgreSQL for the tests — a real server, never a mock.

The server and the per-test databases come from oban_bridge's own pytest plugin
(oban_bridge/testing/pytest_plugin.py, the one users get): OBAN_BRIDGE_TEST_DATABASE_URL if set;
else a testcontainers PostgreSQL when a Docker engine answers; else the embedded server in a
temporary directory. Each test gets a database of its own, cloned from a template that already
holds Oban's v14 schema.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oban_bridge import AsyncObanBridge, ObanBridge
from oban_bridge.testing import database

FIXTURES = Path(__file__).resolve().parent.parent / "elixir_interop_fixtures"


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return path.read_text()


@pytest.fixture(scope="session")
def server_url(oban_server_url: str) -> str:
    return oban_server_url


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with no Oban schema at all."""
    with database.database(server_url, None) as url:
        yield url


@pytest.fixture
def db_url(oban_db_url: str) -> str:
    """A fresh database holding Oban's v14 schema in `public`, as Elixir would leave it."""
    return oban_db_url


@pytest.fixture
def bridge(db_url: str) -> Iterator[ObanBridge]:
    with ObanBridge(db_url, node="pytest") as client:
        yield client


@pytest.fixture
async def abridge(db_url: str) -> AsyncIterator[AsyncObanBridge]:
    async with AsyncObanBridge(db_url, node="pytest") as client:
        yield client


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def load_dump(url: str, dump: str) -> None:
    """Load a pg_dump file, minus psql's backslash meta-commands."""
    body = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(body)  # type: ignore[arg-type]
