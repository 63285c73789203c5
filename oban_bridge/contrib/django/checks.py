"""`manage.py check --database default`: Oban's tables are there, at the version oban_bridge
speaks. A database check, as Django's own are: it runs only for the databases a command names
(`check --database`, `migrate`, the test runner), never on a plain `check` or `runserver`.

Warnings, not errors: Django runs database checks before `migrate`, which may be what creates the
tables (`MigrateOban` in a migration), and on a test database. `check --fail-level WARNING`
makes them fatal where that is wanted (a deploy step)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Tags, Warning, register

MIGRATE_HINT = ("Run Oban's migrations: Elixir's Oban.Migration, `manage.py oban_bridge migrate`, or "
                "oban_bridge.contrib.django.operations.MigrateOban() in one of your migrations.")


@register(Tags.database)
def oban_schema(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Warning]:
    import psycopg
    from django.db import DatabaseError

    from . import _connection, alias, settings
    from ...db import caller_scope, run_sync
    from ...errors import ObanBridgeError
    from ...schema import CURRENT_VERSION, verify_plan

    using = alias()
    if databases is None or using not in databases:
        return []
    prefix = str(settings().get("prefix", "public"))
    try:
        conn = _connection(using)
        with caller_scope(conn):
            found = run_sync(conn, verify_plan(prefix), caller=True)
    except (ObanBridgeError, TypeError) as exc:
        return [Warning(str(exc), hint=MIGRATE_HINT, id="oban_bridge.W001")]
    except (DatabaseError, psycopg.Error) as exc:
        return [Warning(f"cannot check Oban's tables in {using!r}: {exc}", id="oban_bridge.W003")]
    if not found.exists:
        return [Warning(found.summary(), hint=MIGRATE_HINT, id="oban_bridge.W001")]
    if not found.ok:
        return [Warning(found.summary(), hint=f"Oban's tables must be at version {CURRENT_VERSION}, as Elixir's "
                                              f"Oban.Migration leaves them (`manage.py oban_bridge migrate` "
                                              f"upgrades them).", id="oban_bridge.W002")]
    return []
