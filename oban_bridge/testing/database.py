"""A PostgreSQL server for tests, and a database per test holding Oban's schema.

The server, in order: `OBAN_BRIDGE_TEST_DATABASE_URL` when set; else a testcontainers PostgreSQL
when a Docker engine answers (and `testcontainers` is installed); else the embedded server
(`oban_bridge[embedded]`) in a temporary directory. Each test's database is cloned from a template
that already holds the schema (`CREATE DATABASE … TEMPLATE`, a file copy: far quicker than
migrating each time), and dropped after it. oban_bridge's own suite uses the same machinery.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ..db import run_sync
from ..errors import ObanBridgeError
from ..schema import migrate_plan

ENV = "OBAN_BRIDGE_TEST_DATABASE_URL"


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no client library, no engine, no permission: all mean no
        return False


@contextmanager
def server() -> Iterator[str]:
    """The URL of a server the tests may create databases on, for as long as the block runs."""
    explicit = os.environ.get(ENV, "").strip()
    if explicit:
        yield explicit
        return
    if docker_answers():
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError:
            pass
        else:
            with PostgresContainer("postgres:15", driver=None) as pg:
                yield pg.get_connection_url()
            return
    from .. import embedded

    try:
        # A short path: the server's unix socket lives in the data directory.
        root = Path(tempfile.mkdtemp(prefix="obt", dir="/tmp" if os.path.isdir("/tmp") else None))
        running = embedded.start(root / "pgdata", announce=False)
    except Exception as exc:
        raise ObanBridgeError(f"no PostgreSQL for the tests: set {ENV}, start Docker, or install "
                              f"oban_bridge[embedded] ({exc})") from exc
    try:
        yield running.uri
    finally:
        running.release()
        shutil.rmtree(root, ignore_errors=True)


def url_for(server_url: str, dbname: str) -> str:
    return make_conninfo(server_url, dbname=dbname)


def create(server_url: str, template: str | None = None, *, name: str | None = None) -> str:
    """A new database (cloned from `template` when given); returns its name."""
    name = name or "t_" + uuid.uuid4().hex[:12]
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return name


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def template(server_url: str, name: str, prefix: str = "public") -> str:
    """(Re)create the template database `name` holding Oban's current schema in `prefix`."""
    drop(server_url, name)
    create(server_url, name=name)
    with psycopg.connect(url_for(server_url, name)) as conn, conn.transaction():
        run_sync(conn, migrate_plan(prefix))
    return name


@contextmanager
def database(server_url: str, template_name: str | None) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards; yields its URL."""
    name = create(server_url, template_name)
    try:
        yield url_for(server_url, name)
    finally:
        drop(server_url, name)
