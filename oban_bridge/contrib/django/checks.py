"""`manage.py check --database default`: Oban's tables are there, at the version oban_bridge
speaks. A database check, as Django's own are: it runs only for the databases a command names
(`check --database`, `migrate`, the test runner), never on a plain `check` or `runserver`.

Warnings, not errors: Django runs database checks before `migrate`, which may be what creates the
tables (`MigrateOban` in a migration), and on a test database. `check --fail-level WARNING`
makes them fatal where that is wanted (a deploy step). OBAN_BRIDGE itself is checked on every
run (`oban_bridge.E003`), with no database."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register

MIGRATE_HINT = ("Run Oban's migrations: Elixir's Oban.Migration, `manage.py oban_bridge migrate`, or "
                "oban_bridge.contrib.django.operations.MigrateOban() in one of your migrations.")


@register()
def oban_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """OBAN_BRIDGE itself, on every check (no database needed): a typo is an error here, with
    the known keys, rather than a traceback from the first insert."""
    from django.core.exceptions import ImproperlyConfigured

    from . import settings

    try:
        settings()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="oban_bridge.E003")]
    return []


@register(Tags.database)
def oban_schema(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Warning]:
    import psycopg
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    from . import _connection, alias, settings
    from ...db import run_sync
    from ...errors import ObanBridgeError
    from ...schema import CURRENT_VERSION, verify_plan

    if databases is None:
        return []
    try:
        using, prefix = alias(), str(settings().get("prefix", "public"))
    except ImproperlyConfigured:
        return []  # oban_settings reports it
    if using not in databases:
        return []
    try:
        conn = _connection(using)
        # Rolled back whatever happens: the check reads only, and what it sets for its own
        # statements (SET LOCAL search_path) must not stay in a transaction Django has open
        # (a TestCase's, or a connection without autocommit) — a savepoint rolled back undoes it.
        with conn.transaction(force_rollback=True):
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
