"""Django (≥ 4.2, on psycopg 3): jobs inserted on Django's own connection, so they commit or roll
back with the ORM's work (`transaction.atomic()`), and `manage.py oban_bridge start` to run
workers with Django set up.

    INSTALLED_APPS = [..., "oban_bridge.contrib.django"]
    OBAN_BRIDGE = {"queues": "mailers:10", "modules": ["shop.jobs"]}   # all keys optional

    from oban_bridge.contrib.django import insert

    with transaction.atomic():
        order = Order.objects.create(...)
        insert(SendReceipt.new({"order": order.pk}))   # exists iff the order commits

Settings (`settings.OBAN_BRIDGE`, a dict):
- `database`: the alias whose connection inserts use and workers connect to (default "default");
- `prefix`: the schema of Oban's tables (default "public");
- `queues`, `modules`: what `manage.py oban_bridge start` runs when not given `-q` / `-m`;
- `node`: the node name recorded in attempted_by.

Workers run outside any request, so each job starts and ends with
`django.db.close_old_connections()`, as Django does around a request: a job never inherits a
broken or expired connection from the previous job on its thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...client import ObanBridge
from ...job import Job

KEYS = ("database", "prefix", "queues", "modules", "node")
# libpq connection keywords a Django OPTIONS dict may carry; the rest (pool, server_side_binding,
# isolation_level, assume_role, cursor_factory…) are Django's own.
_LIBPQ = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options", "application_name",
          "connect_timeout", "target_session_attrs", "passfile", "service", "keepalives", "keepalives_idle",
          "channel_binding", "gssencmode")


def settings() -> dict[str, Any]:
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured

    values = getattr(django_settings, "OBAN_BRIDGE", {}) or {}
    if not isinstance(values, dict):
        raise ImproperlyConfigured(f"OBAN_BRIDGE must be a dict, got {type(values).__name__}")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ImproperlyConfigured(f"unknown OBAN_BRIDGE setting {unknown[0]!r} (known: {', '.join(KEYS)})")
    return dict(values)


def alias() -> str:
    return str(settings().get("database", "default"))


_clients: dict[tuple[str, str], ObanBridge] = {}


def client() -> ObanBridge:
    """The client inserts go through. It never opens a pool of its own: every insert runs on
    Django's connection."""
    config = settings()
    prefix = str(config.get("prefix", "public"))
    key = (alias(), prefix)
    if key not in _clients:
        _clients[key] = ObanBridge(database_url(), prefix=prefix, node=config.get("node"))
    return _clients[key]


def _connection(using: str | None) -> Any:
    """The psycopg connection under Django's, in whatever transaction Django has open."""
    from django.db import connections

    wrapper = connections[using or alias()]
    if wrapper.vendor != "postgresql":
        raise TypeError(f"oban_bridge needs a PostgreSQL database; {wrapper.alias!r} is {wrapper.vendor}")
    wrapper.ensure_connection()
    import psycopg

    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError("oban_bridge needs Django's PostgreSQL backend on psycopg 3 (pip install 'psycopg[binary]'), "
                        f"not {type(raw).__module__}")
    return raw


def insert(job: Job, *, using: str | None = None) -> Job:
    """Insert on Django's connection: inside `transaction.atomic()` the job commits or rolls back
    with the block (and Elixir nodes hear of it only at the commit); outside, it commits at once."""
    return client().insert(job, conn=_connection(using))


def insert_all(jobs: Iterable[Job], *, using: str | None = None) -> list[Job]:
    return client().insert_all(jobs, conn=_connection(using))


def database_url(using: str | None = None) -> str:
    """A libpq connection string for the database Django uses (for the worker processes)."""
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    settings_dict = connections[using or alias()].settings_dict
    params: dict[str, Any] = {}
    for key, name in (("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"),
                      ("PORT", "port")):
        if settings_dict.get(key):
            params[name] = str(settings_dict[key])
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key in _LIBPQ and value is not None:
            params[key] = str(value)
    return make_conninfo(**params)


class _FreshConnections:
    """A global hook (pro/hooks.py): close_old_connections() before and after each job."""

    def before_process(self, job: Job) -> None:
        from django.db import close_old_connections

        close_old_connections()

    def after_process(self, state: str, job: Job) -> None:
        from django.db import close_old_connections

        close_old_connections()


_fresh = _FreshConnections()


def boot() -> None:
    """Set Django up (in a `--processes` child, started afresh) and keep job connections fresh.
    Run by `manage.py oban_bridge` through OBAN_BRIDGE_BOOT, in every node process."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from ...pro.hooks import attach_hook

    attach_hook(_fresh)


__all__ = ["boot", "client", "database_url", "insert", "insert_all", "settings"]
