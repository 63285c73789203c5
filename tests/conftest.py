"""PostgreSQL for the tests — a real server, never a mock.

Order: OBAN_BRIDGE_TEST_DATABASE_URL if set; else a testcontainers PostgreSQL when a Docker engine
answers; else the embedded server (oban_bridge.embedded) in a temporary directory. Each test gets a database
of its own, cloned from a template that already holds Oban's v14 schema.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from oban_bridge import AsyncObanBridge, ObanBridge
from oban_bridge.db import run_sync
from oban_bridge.schema import migrate_plan

FIXTURES = Path(__file__).resolve().parent.parent / "elixir_interop_fixtures"
TEMPLATE = "oban_bridge_template"


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return path.read_text()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    explicit = os.environ.get("OBAN_BRIDGE_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as pg:
            yield pg.get_connection_url()
        return
    from oban_bridge import embedded

    # A short path: the server's unix socket lives in the data directory.
    root = Path(tempfile.mkdtemp(prefix="obt", dir="/tmp"))
    server = embedded.start(root / "pgdata", announce=False)
    try:
        yield server.uri
    finally:
        server.release()
        shutil.rmtree(root, ignore_errors=True)


def db_url_for(server_url: str, dbname: str) -> str:
    return make_conninfo(server_url, dbname=dbname)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    with psycopg.connect(db_url_for(server_url, TEMPLATE)) as conn:
        with conn.transaction():
            run_sync(conn, migrate_plan("public"))
    return TEMPLATE


def _create_db(server_url: str, template: str | None) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_db(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with no Oban schema at all."""
    name = _create_db(server_url, None)
    yield db_url_for(server_url, name)
    _drop_db(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh database holding Oban's v14 schema in `public`, as Elixir would leave it."""
    name = _create_db(server_url, template_db)
    yield db_url_for(server_url, name)
    _drop_db(server_url, name)


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
