"""`MigrateOban()`: Oban's migrations as a step of your own Django migrations, as an Elixir app
puts `Oban.Migration.up(version: 14)` in an Ecto migration.

    from django.db import migrations
    from oban_bridge.contrib.django.operations import MigrateOban

    class Migration(migrations.Migration):
        dependencies = []
        operations = [MigrateOban()]          # or MigrateOban(version=14, prefix="private")

It brings the schema up to `version` inside the migration's transaction and does nothing where
Oban's tables are already there at that version or later (an Elixir app that migrated first), so
the same migration serves a shared database, a fresh one and the test runner's. Unapplying it
leaves the tables alone: they may hold the Elixir app's queue (Elixir's Oban.Migration.down
removes them). In a project with several databases, only the one `OBAN_BRIDGE["database"]`
names gets the tables.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from ...schema import CURRENT_VERSION


class MigrateOban(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = False
    atomic = True

    def __init__(self, version: int = CURRENT_VERSION, prefix: str | None = None) -> None:
        from ...config import validate_prefix

        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version: expected an Oban migration version (an integer), got {version!r}")
        self.version = version
        self.prefix = None if prefix is None else validate_prefix(prefix)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        # The class name alone: Django's writer imports the module itself. The version is always
        # written out, so a squashed migration stays at the version it was made with.
        kwargs: dict[str, Any] = {"version": self.version}
        if self.prefix is not None:
            kwargs["prefix"] = self.prefix
        return self.__class__.__name__, [], kwargs

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # no Django models: Oban's tables belong to Oban

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        from . import _connection, alias, settings
        from ...db import caller_scope, run_sync
        from ...schema import migrate_plan

        if schema_editor.connection.alias != alias():
            return  # only the database oban_bridge uses (OBAN_BRIDGE["database"]) holds Oban's tables
        prefix = self.prefix or str(settings().get("prefix", "public"))
        conn = _connection(schema_editor.connection.alias)
        with caller_scope(conn):
            run_sync(conn, migrate_plan(prefix, self.version), caller=True)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        pass  # see the module docstring: the tables may be the Elixir app's queue

    def describe(self) -> str:
        return f"Oban's tables up to version {self.version}"
