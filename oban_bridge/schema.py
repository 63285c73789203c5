"""Install, upgrade and verify Elixir Oban's schema (Postgres migration versions 1 to 14).

The SQL lives in `schema/vNN.sql`, one file per `Oban.Migrations.Postgres.VNN` module, and is
applied the way `lib/oban/migrations/postgres.ex` does: read the version from the `oban_jobs`
table comment, run every later version in order, then write the new version into the comment.
Nothing here runs unless asked: clients never migrate on their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from .config import DEFAULT_PREFIX
from .db import Plan, Query
from .errors import ForeignSchemaError, SchemaError, SchemaMissingError

CURRENT_VERSION = 14
INITIAL_VERSION = 1


def _schema_dir() -> Path:
    # Installed wheels carry the SQL as package data (pyproject force-include); a source checkout
    # or an editable install reads the repository's top-level schema/ directory.
    packaged = resources.files("oban_bridge").joinpath("_schema")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schema"


@cache
def migration_sql(version: int) -> str:
    return (_schema_dir() / f"v{version:02d}.sql").read_text()


def render_migration(version: int, prefix: str) -> sql.Composed:
    return sql.SQL(migration_sql(version)).format(
        prefix=sql.Identifier(prefix),
        prefix_literal=sql.Literal(prefix),
        insert_channel=sql.Literal(f"{prefix}.oban_insert"),
        update_channel=sql.Literal(f"{prefix}.oban_update"),
    )


_VERSION_SQL = sql.SQL(
    """
    SELECT pg_catalog.obj_description(c.oid, 'pg_class') AS version
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'oban_jobs' AND c.relkind IN ('r', 'p') AND n.nspname = %s
    """
)

# What oban-py 0.7 installs (oban/queries/install.sql) and Elixir never does.
_FOREIGN_SQL = sql.SQL(
    """
    SELECT
      (SELECT array_agg(c.relname::text ORDER BY c.relname)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(prefix)s AND c.relname IN ('oban_leaders', 'oban_producers')
      ) AS foreign_tables,
      (SELECT format_type(a.atttypid, a.atttypmod)
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(prefix)s AND c.relname = 'oban_jobs' AND a.attname = 'errors'
          AND NOT a.attisdropped
      ) AS errors_type,
      (SELECT a.attidentity <> ''
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(prefix)s AND c.relname = 'oban_jobs' AND a.attname = 'id'
      ) AS identity_id
    """
)


@dataclass(slots=True)
class Found:
    """What sits in a schema: no table, an Elixir Oban table at some version, or a foreign one."""

    exists: bool
    version: int | None = None
    foreign: str | None = None


def _parse_version(comment: str | None) -> int | None:
    if comment is None:
        return None
    if comment == "∞":  # Oban's own marker for "always newest"
        return CURRENT_VERSION
    return int(comment) if comment.isdigit() else None


def inspect_plan(prefix: str) -> Plan[Found]:
    rows = yield Query(_VERSION_SQL, [prefix])
    if not rows:
        return Found(exists=False)
    facts = (yield Query(_FOREIGN_SQL, {"prefix": prefix}))[0]
    version = _parse_version(rows[0]["version"])
    signs = []
    if facts["foreign_tables"]:
        signs.append("tables " + ", ".join(facts["foreign_tables"]))
    if facts["errors_type"] and facts["errors_type"] != "jsonb[]":
        signs.append(f"errors is {facts['errors_type']} (Elixir Oban: jsonb[])")
    if facts["identity_id"]:
        signs.append("id is an identity column (Elixir Oban: bigserial)")
    if version is None:
        signs.append(f"no migration version in the oban_jobs comment ({rows[0]['version']!r})")
    if signs:
        return Found(
            exists=True,
            version=version,
            foreign=(
                f"schema {prefix!r} holds an oban_jobs table that Elixir Oban's migrations did "
                "not create — it looks like the one oban-py installs (" + "; ".join(signs) + "). "
                "oban_bridge shares Elixir Oban's schema and will not work on or alter this one"
            ),
        )
    return Found(exists=True, version=version)


def require_plan(prefix: str) -> Plan[int]:
    """Check a schema is usable without touching it; returns its version."""
    found = yield from inspect_plan(prefix)
    if not found.exists:
        raise SchemaMissingError(prefix)
    if found.foreign:
        raise ForeignSchemaError(found.foreign)
    assert found.version is not None
    return found.version


@dataclass(frozen=True, slots=True)
class MigrationResult:
    prefix: str
    from_version: int
    to_version: int
    limits: bool = False  # oban_bridge's own rate-limit table is in place (`limits=True`)

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def migrate_plan(
    prefix: str = DEFAULT_PREFIX,
    version: int = CURRENT_VERSION,
    *,
    create_schema: bool | None = None,
    limits: bool = False,
) -> Plan[MigrationResult]:
    """`Oban.Migrations.Postgres.up/1`: bring `prefix` up to `version` inside the caller's
    transaction (Ecto runs a migration in one transaction too). `limits=True` also creates
    oban_bridge's own table for rate limits (schema/bridge_limits.sql), which Elixir never has."""
    result = yield from _oban_migration(prefix, version, create_schema)
    if limits:
        yield Query(render_sql("bridge_limits.sql", prefix), fetch="none")
        return MigrationResult(result.prefix, result.from_version, result.to_version, True)
    return result


def render_sql(name: str, prefix: str) -> sql.Composed:
    return sql.SQL((_schema_dir() / name).read_text()).format(prefix=sql.Identifier(prefix))


LIMITS_TABLE = "oban_bridge_rate_limits"


LIMITS_TABLES = (LIMITS_TABLE, "oban_bridge_limit_claims")


def has_limits_table_plan(prefix: str) -> Plan[bool]:
    """Whether `migrate --limits` made every table of schema/bridge_limits.sql."""
    rows = yield Query(sql.SQL("SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL) AS present "
                               "FROM unnest(%s::text[]) AS t"), [prefix, list(LIMITS_TABLES)])
    return bool(rows[0]["present"])


def limits_table_missing(prefix: str, queues: Sequence[str]) -> SchemaError:
    return SchemaError(
        f"queue(s) {', '.join(sorted(queues))} have a global or rate limit, which needs oban_bridge's own "
        f"tables {prefix}.{LIMITS_TABLE} and {prefix}.{LIMITS_TABLES[1]}: run `oban-bridge migrate --limits`"
        + (f" --prefix {prefix}" if prefix != "public" else ""))


def ready_plan(prefix: str, limited: Sequence[str] = ()) -> Plan[int]:
    """What a node needs before it starts: Oban's schema, and oban_bridge's limits table when a
    queue has a global or rate limit. Returns the schema's version."""
    version = yield from require_plan(prefix)
    if limited and not (yield from has_limits_table_plan(prefix)):
        raise limits_table_missing(prefix, limited)
    return version


def _oban_migration(prefix: str, version: int, create_schema: bool | None) -> Plan[MigrationResult]:
    if not INITIAL_VERSION <= version <= CURRENT_VERSION:
        raise SchemaError(f"unknown Oban migration version {version} (known: 1 to {CURRENT_VERSION})")
    # Serialise concurrent migrations of the same prefix, as Ecto's migration lock does.
    yield Query(
        sql.SQL("SELECT pg_advisory_xact_lock(hashtext('oban_bridge.migrate'), hashtext(%s))"),
        [prefix],
    )
    found = yield from inspect_plan(prefix)
    if found.foreign:
        raise ForeignSchemaError(found.foreign)
    current = found.version or 0
    if current >= version:
        return MigrationResult(prefix, current, current)
    create = prefix != DEFAULT_PREFIX if create_schema is None else create_schema
    if create and current == 0:
        yield Query(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(prefix)), fetch="none"
        )
    for step in range(max(current + 1, INITIAL_VERSION), version + 1):
        yield Query(render_migration(step, prefix), fetch="none")
    yield Query(
        sql.SQL("COMMENT ON TABLE {}.oban_jobs IS {}").format(
            sql.Identifier(prefix), sql.Literal(str(version))
        ),
        fetch="none",
    )
    return MigrationResult(prefix, current, version)


# ---------------------------------------------------------------------------------------------
# Verification: a prefix-neutral description of the catalog, compared with the reference taken
# from a real Elixir Oban 2.23.1 database (elixir_interop_fixtures/schema.sql).

_FINGERPRINT_SQL = sql.SQL(
    """
    WITH ns AS (SELECT oid, quote_ident(nspname) || '.' AS q FROM pg_namespace WHERE nspname = %(prefix)s),
    rel AS (
      SELECT c.oid, c.relname, c.relpersistence FROM pg_class c, ns
      WHERE c.relnamespace = ns.oid AND c.relname IN ('oban_jobs', 'oban_peers') AND c.relkind = 'r'
    )
    SELECT json_build_object(
      'enum', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                 FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid, ns
                WHERE t.typname = 'oban_job_state' AND t.typnamespace = ns.oid),
      'tables', (SELECT json_object_agg(rel.relname, json_build_object(
          'persistence', rel.relpersistence,
          'comment', obj_description(rel.oid, 'pg_class'),
          'columns', (SELECT json_agg(json_build_array(
                          a.attname,
                          replace(format_type(a.atttypid, a.atttypmod), ns.q, '<prefix>.'),
                          a.attnotnull,
                          replace(pg_get_expr(d.adbin, d.adrelid), ns.q, '<prefix>.'))
                        ORDER BY a.attnum)
                        FROM pg_attribute a LEFT JOIN pg_attrdef d
                          ON d.adrelid = a.attrelid AND d.adnum = a.attnum, ns
                       WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped),
          'constraints', (SELECT json_agg(json_build_array(
                              co.conname, co.contype::text,
                              replace(pg_get_constraintdef(co.oid), ns.q, '<prefix>.'),
                              co.convalidated) ORDER BY co.conname)
                            FROM pg_constraint co, ns WHERE co.conrelid = rel.oid),
          'indexes', (SELECT json_agg(json_build_array(
                          i.relname,
                          replace(pg_get_indexdef(i.oid), ns.q, '<prefix>.')) ORDER BY i.relname)
                        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid, ns
                       WHERE x.indrelid = rel.oid),
          'triggers', (SELECT json_agg(tg.tgname ORDER BY tg.tgname)
                         FROM pg_trigger tg WHERE tg.tgrelid = rel.oid AND NOT tg.tgisinternal)
        )) FROM rel),
      'functions', (SELECT json_agg(p.proname ORDER BY p.proname)
                      FROM pg_proc p, ns WHERE p.pronamespace = ns.oid AND p.proname LIKE 'oban%%'),
      'sequences', (SELECT json_agg(s.relname ORDER BY s.relname)
                      FROM pg_class s, ns WHERE s.relnamespace = ns.oid AND s.relkind = 'S'
                       AND s.relname LIKE 'oban%%')
    ) AS fingerprint
    """
)


def fingerprint_plan(prefix: str) -> Plan[dict[str, Any]]:
    # format_type() and pg_get_*def() qualify names by search_path; pin it so the description
    # is the same whatever the session's path is.
    yield Query(sql.SQL("SET LOCAL search_path = pg_catalog"), fetch="none")
    rows = yield Query(_FINGERPRINT_SQL, {"prefix": prefix})
    return rows[0]["fingerprint"]  # type: ignore[no-any-return]


@cache
def reference() -> dict[str, Any]:
    """The catalog description of a v14 schema created by Elixir Oban 2.23.1."""
    data = (_schema_dir() / "reference_v14.json").read_text()
    return json.loads(data)  # type: ignore[no-any-return]


def diff(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Human-readable differences between two fingerprints."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(actual) | set(expected), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{where}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{where}: unexpected {actual[key]!r}")
            else:
                out.extend(diff(actual[key], expected[key], where))
        return out
    if isinstance(actual, list) and isinstance(expected, list) and _named(actual) and _named(expected):
        return diff({i[0]: i[1:] for i in actual}, {i[0]: i[1:] for i in expected}, path)
    if actual != expected:
        return [f"{path}: found {actual!r}, expected {expected!r}"]
    return []


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, list) and i and isinstance(i[0], str) for i in items)


@dataclass(slots=True)
class Verification:
    prefix: str
    exists: bool
    version: int | None
    foreign: str | None = None
    differences: list[str] = field(default_factory=list)
    limits: bool = False  # oban_bridge's own rate-limit table is present (not part of the comparison)

    @property
    def ok(self) -> bool:
        return self.exists and not self.foreign and self.version == CURRENT_VERSION and not self.differences

    def summary(self) -> str:
        if not self.exists:
            return f"schema {self.prefix!r}: no Oban tables (run `oban-bridge migrate --prefix {self.prefix}`)"
        if self.foreign:
            return self.foreign
        head = f"schema {self.prefix!r}: Oban migration version {self.version}"
        if self.version is not None and self.version < CURRENT_VERSION:
            head += f" (current is {CURRENT_VERSION}: `oban-bridge migrate` upgrades it)"
        own = f"; oban_bridge's own {' and '.join(LIMITS_TABLES)} tables are present" if self.limits else ""
        if not self.differences:
            return head + ", identical to Elixir Oban 2.23.1" + own
        return head + f", {len(self.differences)} difference(s) from Elixir Oban 2.23.1" + own


def verify_plan(prefix: str = DEFAULT_PREFIX) -> Plan[Verification]:
    found = yield from inspect_plan(prefix)
    if not found.exists or found.foreign:
        return Verification(prefix, found.exists, found.version, found.foreign)
    actual = yield from fingerprint_plan(prefix)
    limits = yield from has_limits_table_plan(prefix)
    return Verification(prefix, True, found.version, None, diff(actual, reference()), limits)
