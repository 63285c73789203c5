"""The framework integrations keep the one promise that matters: a job inserted in the app's
transaction exists iff that transaction commits, and Elixir nodes hear of it only then. Checked
with SQLAlchemy 2 (sync and async sessions) and FastAPI (a request handler through the test
client, and in-process workers); Django in its example app's own process (examples/django_shop)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from oban_bridge import Job, worker
from oban_bridge.contrib import sqlalchemy as oban_sa
from oban_bridge.contrib.fastapi import Oban, get_oban, lifespan
from oban_bridge.notifier import channel

from .test_runtime import count, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """What an Elixir node hears: oban_insert notifications."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'LISTEN "{channel("public", "insert")}"')
        yield conn


def heard(conn: psycopg.Connection[Any]) -> int:
    return len(list(conn.notifies(timeout=0.3, stop_after=10)))


def jobs(db_url: str, worker_name: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM oban_jobs WHERE worker = %s", [worker_name]).fetchone()
    return int(row[0]) if row else 0


def test_sqlalchemy_session_insert_commits_and_rolls_back_with_the_session(
        db_url: str, listener: psycopg.Connection[Any]) -> None:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id serial PRIMARY KEY, total int)"))
    with Session(engine) as session:
        with session.begin():
            session.execute(text("INSERT INTO orders (total) VALUES (10)"))
            oban_sa.insert(session, Job.new("Shop.Receipt", {"order": 1}))
            session.rollback()
        assert jobs(db_url, "Shop.Receipt") == 0 and heard(listener) == 0
        with session.begin():
            session.execute(text("INSERT INTO orders (total) VALUES (20)"))
            job = oban_sa.insert(session, Job.new("Shop.Receipt", {"order": 2}))
            oban_sa.insert_all(session, [Job.new("Shop.Audit", {"n": n}) for n in range(3)])
            assert heard(listener) == 0  # not before the commit
        assert job.id is not None
    assert jobs(db_url, "Shop.Receipt") == 1 and jobs(db_url, "Shop.Audit") == 3
    assert heard(listener) >= 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 1
    engine.dispose()
    scoped = scoped_session(sessionmaker(create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))))
    with scoped.begin():  # Flask-SQLAlchemy's db.session is one of these
        oban_sa.insert(scoped, Job.new("Shop.Scoped", {}))
    scoped.remove()
    assert jobs(db_url, "Shop.Scoped") == 1
    other = create_engine("sqlite://")
    with Session(other) as session, pytest.raises(TypeError, match="psycopg 3 driver"):
        oban_sa.insert(session, Job.new("Shop.Receipt", {}))


async def test_sqlalchemy_async_session_insert_commits_and_rolls_back_with_it(
        db_url: str, listener: psycopg.Connection[Any]) -> None:
    engine = create_async_engine("postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(db_url))
    async with AsyncSession(engine) as session:
        async with session.begin():
            await oban_sa.insert_async(session, Job.new("Shop.Receipt", {"order": 1}))
            await session.rollback()
        assert jobs(db_url, "Shop.Receipt") == 0 and heard(listener) == 0
        async with session.begin():
            await oban_sa.insert_async(session, Job.new("Shop.Receipt", {"order": 2}))
            await oban_sa.insert_all_async(session, [Job.new("Shop.Audit", {})])
            assert heard(listener) == 0
    assert jobs(db_url, "Shop.Receipt") == 1 and jobs(db_url, "Shop.Audit") == 1
    assert heard(listener) >= 1
    async with AsyncSession(engine) as session:
        with pytest.raises(TypeError, match=r"expected a Session or Connection, got .*AsyncSession "
                                            r"\(that one goes with insert_async"):
            oban_sa.insert(session, Job.new("Shop.Receipt", {}))  # type: ignore[arg-type]
    await engine.dispose()
    sync_engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))
    with Session(sync_engine) as sync_session:
        with pytest.raises(TypeError, match=r"expected an AsyncSession or AsyncConnection, got .*Session "
                                            r"\(that one goes with insert\(\)"):
            await oban_sa.insert_async(sync_session, Job.new("Shop.Receipt", {}))
    sync_engine.dispose()


@worker("Api.Welcome", queue="api")
async def welcome(job: Job) -> None:
    return None


def test_fastapi_handler_inserts_with_the_apps_client(db_url: str) -> None:
    app = FastAPI(lifespan=lifespan(db_url))

    @app.post("/signup/{email}")
    async def signup(email: str, oban: Oban) -> dict[str, Any]:
        job = await oban.insert(welcome.new({"email": email}))  # type: ignore[attr-defined]
        return {"job": job.id}

    with TestClient(app) as client:
        response = client.post("/signup/parker@example.com")
        assert response.status_code == 200
        job_id = response.json()["job"]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT worker, state, args FROM oban_jobs WHERE id = %s", [job_id]).fetchone()
    assert row == ("Api.Welcome", "available", {"email": "parker@example.com"})  # no workers: stays enqueued
    assert app.state.oban is None  # closed with the app


async def test_fastapi_in_process_workers_run_and_stop_with_the_app(db_url: str) -> None:
    app = FastAPI(lifespan=lifespan(db_url, queues={"api": 2}, poll_interval=0.05))

    @app.post("/signup")
    async def signup(oban: Oban) -> dict[str, Any]:
        await oban.insert(welcome.new({}))  # type: ignore[attr-defined]
        return {}

    with TestClient(app) as client:
        assert client.post("/signup").status_code == 200
        await wait_for(lambda: count(db_url, "state = 'completed'") == 1)


def test_fastapi_without_the_lifespan_says_what_is_missing() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(oban: Oban) -> dict[str, Any]:
        return {}

    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(RuntimeError, match="lifespan"):
        client.get("/")
    assert get_oban  # the dependency, for apps that prefer Depends(get_oban)


def test_fastapi_example_runs_under_uvicorn_as_documented(db_url: str) -> None:
    """`DATABASE_URL=… uvicorn examples.fastapi_signup.app:app`, as its docstring says: a fresh
    database (Oban's tables only), two workers starting at once, and a sign-up that enqueues the
    Elixir app's welcome mail."""
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.fastapi_signup.app:app", "--port", str(port),
                               "--workers", "2"],
                              cwd=ROOT, env={**os.environ, "DATABASE_URL": db_url}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline, reply = time.monotonic() + 60, None
        while reply is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - our own local server
                        f"http://127.0.0.1:{port}/signup/ada@example.com", method="POST"), timeout=5) as answer:
                    reply = answer.status
            except urllib.error.HTTPError as failed:
                reply = failed.code
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert reply == 200
    finally:
        server.terminate()
        server.wait(30)
    assert jobs(db_url, "MyApp.Mailer.Welcome") == 1


def test_django_shop_example_passes_its_own_tests(server_url: str) -> None:
    """Django is configured once per process: the example app runs its tests in its own."""
    env = {**os.environ, "OBAN_BRIDGE_TEST_DATABASE_URL": server_url}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/django_shop"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
