"""pytest fixtures for code that uses oban_bridge, loaded by the `pytest11` entry point.

- `oban_db_url`: a database of its own for each test, holding Oban's schema in `oban_prefix`
  (server: `OBAN_BRIDGE_TEST_DATABASE_URL`, else Docker, else the embedded PostgreSQL);
- `oban`: an `ObanBridge` on it in `testing="manual"` mode — inserts land, nothing runs until
  drained; `oban_testing`: `Testing(oban)`;
- `async_oban` / `async_oban_testing`: the async twins (with pytest-asyncio installed).

Override `oban_prefix` (session scope) when the app's Oban lives in another schema, or
`oban_bridge_options` for other client options.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ..client import AsyncObanBridge, ObanBridge
from . import database
from .helpers import AsyncTesting, Testing


@pytest.fixture(scope="session")
def oban_server_url() -> Iterator[str]:
    with database.server() as url:
        yield url


@pytest.fixture(scope="session")
def oban_prefix() -> str:
    return "public"


@pytest.fixture(scope="session")
def oban_template_db(oban_server_url: str, oban_prefix: str) -> Iterator[str]:
    name = database.template(oban_server_url, f"oban_bridge_tpl_{uuid.uuid4().hex[:8]}", oban_prefix)
    yield name
    database.drop(oban_server_url, name)


@pytest.fixture
def oban_db_url(oban_server_url: str, oban_template_db: str) -> Iterator[str]:
    with database.database(oban_server_url, oban_template_db) as url:
        yield url


@pytest.fixture
def oban_bridge_options() -> dict[str, Any]:
    """Extra keyword arguments for the `oban` and `async_oban` clients."""
    return {}


@pytest.fixture
def oban(oban_db_url: str, oban_prefix: str, oban_bridge_options: dict[str, Any]) -> Iterator[ObanBridge]:
    options = {"node": "pytest", "testing": "manual", **oban_bridge_options}
    with ObanBridge(oban_db_url, prefix=oban_prefix, **options) as client:
        yield client


@pytest.fixture
def oban_testing(oban: ObanBridge) -> Testing:
    return Testing(oban)


try:
    import pytest_asyncio
except ImportError:  # the async fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def async_oban(oban_db_url: str, oban_prefix: str,
                         oban_bridge_options: dict[str, Any]) -> AsyncIterator[AsyncObanBridge]:
        options = {"node": "pytest", "testing": "manual", **oban_bridge_options}
        async with AsyncObanBridge(oban_db_url, prefix=oban_prefix, **options) as client:
            yield client

    @pytest_asyncio.fixture
    async def async_oban_testing(async_oban: AsyncObanBridge) -> AsyncTesting:
        return AsyncTesting(async_oban)
