"""Django is configured once per process: one database for this example's whole session (cloned
from the plugin's template, so it holds Oban's tables), Django's own tables migrated into it, and
the shop's tables emptied before each test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def shop_db_url(oban_server_url: str, oban_template_db: str) -> Iterator[str]:
    from oban_bridge.testing import database

    with database.database(oban_server_url, oban_template_db) as url:
        os.environ["DATABASE_URL"] = url
        os.environ["DJANGO_SETTINGS_MODULE"] = "shop_site.settings"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield url
        from django.db import connections

        connections.close_all()


@pytest.fixture(autouse=True)
def clean(shop_db_url: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE shop_order, oban_jobs")
