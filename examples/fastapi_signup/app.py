"""A FastAPI service that signs users up in its own PostgreSQL tables (SQLAlchemy 2, async) and
enqueues the welcome mail for the Elixir app's mailer — in the same transaction: a sign-up that
fails leaves no mail behind.

    DATABASE_URL=postgresql://localhost/my_app uvicorn examples.fastapi_signup.app:app

The app's lifespan makes its own table, then holds the app's client (`running`, from
oban_bridge.contrib.fastapi); the insert joins the request's session (oban_bridge.contrib.sqlalchemy).
Oban's tables are the Elixir app's (or `oban-bridge migrate`'s).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import String, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from oban_bridge import Job
from oban_bridge.contrib.fastapi import Oban, running
from oban_bridge.contrib.sqlalchemy import insert_async


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "signup_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)


def make_app(database_url: str | None = None) -> FastAPI:
    url = database_url or os.environ.get("DATABASE_URL", "")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)) if "://" in url else \
        create_async_engine("postgresql+psycopg://", async_creator=lambda: _connect(url))
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with engine.begin() as conn:
                # The service's own table, once, even when `uvicorn --workers N` starts N at once.
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('fastapi_signup.tables'))"))
                await conn.run_sync(Base.metadata.create_all)
            async with running(app, url or None):
                yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=app_lifespan)

    async def session() -> AsyncIterator[AsyncSession]:
        async with sessions() as s:
            yield s

    @app.post("/signup/{email}")
    async def signup(email: str, oban: Oban, db: AsyncSession = Depends(session)) -> dict[str, Any]:
        async with db.begin():
            if (await db.execute(select(User).where(User.email == email))).first():
                raise HTTPException(409, "already signed up")
            user = User(email=email)
            db.add(user)
            await db.flush()
            # The Elixir app runs this worker; the job commits with the user, or neither does.
            job = await insert_async(db, Job.new("MyApp.Mailer.Welcome", {"user_id": user.id}, queue="mailers"))
        return {"user": user.id, "job": job.id, "client": oban.config.node}

    app.state.engine = engine
    return app


async def _connect(conninfo: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(conninfo)


app = make_app() if os.environ.get("DATABASE_URL") else None
