"""FastAPI and Starlette: one `AsyncObanBridge` for the app's lifetime, opened in its lifespan,
and a dependency that hands it to request handlers.

    from oban_bridge.contrib.fastapi import Oban, lifespan

    app = FastAPI(lifespan=lifespan())                     # DATABASE_URL, else the embedded one
    # or lifespan(url, queues={"mailers": 5}): also run workers in-process (small deployments)

    @app.post("/signup")
    async def signup(oban: Oban):
        await oban.insert(Job.new("MyApp.Welcome", {"email": ...}))

With the app's own lifespan, nest `running(app, …)` in it instead. Inserting in the same
transaction as the request's SQLAlchemy session: `contrib.sqlalchemy.insert_async(session, job)`.
In-process workers stop with the app: on shutdown their running jobs get `shutdown_grace` seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from ..client import AsyncObanBridge

try:  # FastAPI injects the request by this annotation (resolved at runtime from this module)
    from starlette.requests import Request
except ImportError:  # pragma: no cover - oban_bridge[fastapi] brings Starlette
    Request = Any  # type: ignore[misc,assignment]

STATE_KEY = "oban"


@asynccontextmanager
async def running(app: Any, database_url: str | None = None, **options: Any) -> AsyncIterator[AsyncObanBridge]:
    """Open a client (and start its queues, when given) for as long as the block runs, kept on
    `app.state.oban`."""
    async with AsyncObanBridge(database_url, **options) as oban:
        setattr(app.state, STATE_KEY, oban)
        try:
            yield oban
        finally:
            setattr(app.state, STATE_KEY, None)


def lifespan(database_url: str | None = None, **options: Any) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for `FastAPI(lifespan=…)` / `Starlette(lifespan=…)` that only runs the client."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        async with running(app, database_url, **options):
            yield

    return run


def get_oban(request: Request) -> AsyncObanBridge:
    """The app's client (a dependency: `oban: AsyncObanBridge = Depends(get_oban)`)."""
    oban = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(oban, AsyncObanBridge):
        raise RuntimeError("no oban_bridge client on app.state: give the app lifespan=oban_bridge.contrib.fastapi."
                           "lifespan(...) or open one with running(app, ...) in your lifespan")
    return oban


if TYPE_CHECKING:
    Oban = AsyncObanBridge
else:
    try:
        from fastapi import Depends
    except ImportError:  # Starlette alone: call get_oban(request) in the endpoint
        Oban = AsyncObanBridge
    else:
        Oban = Annotated[AsyncObanBridge, Depends(get_oban)]

__all__ = ["Oban", "get_oban", "lifespan", "running"]
