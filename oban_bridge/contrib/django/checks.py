"""`manage.py check --database default`: Oban's tables are there, at the version oban_bridge
speaks. A database check, as Django's own are: it runs only when asked (it connects)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register


@register(Tags.database)
def oban_schema(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    from . import _connection, alias, settings
    from ...db import caller_scope, run_sync
    from ...errors import ObanBridgeError
    from ...schema import CURRENT_VERSION, verify_plan

    using = alias()
    if databases is not None and using not in databases:
        return []
    prefix = str(settings().get("prefix", "public"))
    try:
        conn = _connection(using)
        with caller_scope(conn):
            found = run_sync(conn, verify_plan(prefix))
    except (ObanBridgeError, TypeError) as exc:
        return [Error(str(exc), hint="Run Oban's migrations (Elixir's Oban.Migration, or `oban-bridge migrate`).",
                      id="oban_bridge.E001")]
    if not found.exists:
        return [Error(found.summary(), hint="Run Oban's migrations (Elixir's Oban.Migration, or `oban-bridge migrate`).",
                      id="oban_bridge.E001")]
    if not found.ok:
        return [Error(found.summary(), hint=f"Oban's tables must be at version {CURRENT_VERSION}, as Elixir's "
                                            f"Oban.Migration leaves them (`oban-bridge migrate` upgrades them).",
                      id="oban_bridge.E002")]
    return []
