"""The schema oban_bridge installs is Elixir Oban 2.23.1's, catalog entry for catalog entry."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from oban_bridge import ForeignSchemaError, ObanBridge, SchemaMissingError
from oban_bridge.db import run_sync
from oban_bridge.schema import CURRENT_VERSION, diff, fingerprint_plan, reference

from .conftest import fixture, load_dump


def fingerprint(url: str, prefix: str = "public") -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return run_sync(conn, fingerprint_plan(prefix))


def test_reference_is_the_elixir_dump(empty_db_url: str) -> None:
    """schema/reference_v14.json describes exactly the pg_dump taken from a real Elixir node."""
    load_dump(empty_db_url, fixture("schema.sql"))
    assert diff(fingerprint(empty_db_url), reference()) == []


def test_fresh_install_matches_elixir(empty_db_url: str) -> None:
    with ObanBridge(empty_db_url) as bridge:
        result = bridge.migrate()
        assert (result.from_version, result.to_version) == (0, CURRENT_VERSION)
        report = bridge.verify()
    assert report.ok, report.differences
    assert report.version == 14
    load_dump_url = empty_db_url
    assert fingerprint(load_dump_url)["tables"]["oban_jobs"]["comment"] == "14"


@pytest.mark.parametrize("prefix", ["private", 'Odd "Pre; fix', "tenant-1"])
def test_any_prefix_is_quoted_and_matches(empty_db_url: str, prefix: str) -> None:
    with ObanBridge(empty_db_url, prefix=prefix) as bridge:
        bridge.migrate()
        report = bridge.verify()
    assert report.ok, report.differences
    # Nothing leaked into public.
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_jobs')").fetchone() == (None,)


@pytest.mark.parametrize("start", [11, 12, 13])
def test_upgrades_from_older_versions_end_identical(empty_db_url: str, start: int) -> None:
    with ObanBridge(empty_db_url) as bridge:
        assert bridge.migrate(start).to_version == start
        before = bridge.verify()
        assert before.version == start and not before.ok
        assert before.differences, "an older version must differ from v14"
        result = bridge.migrate()
        assert (result.from_version, result.to_version) == (start, 14)
        after = bridge.verify()
    assert after.ok, after.differences


def test_v11_then_elixir_style_rows_survive_upgrade(empty_db_url: str) -> None:
    with ObanBridge(empty_db_url) as bridge:
        bridge.migrate(11)
        with bridge.connection() as conn:
            conn.execute("INSERT INTO oban_jobs (worker, args, priority) VALUES ('W', '{\"a\": 1}', 3)")
        bridge.migrate()
        with bridge.connection() as conn:
            assert conn.execute("SELECT worker, args, priority FROM oban_jobs").fetchall() == [("W", {"a": 1}, 3)]


def test_migrate_is_idempotent(db_url: str) -> None:
    with ObanBridge(db_url) as bridge:
        result = bridge.migrate()
    assert not result.changed and result.from_version == 14


def test_verify_lists_each_difference(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX oban_jobs_meta_index")
        conn.execute("ALTER TABLE oban_jobs ALTER COLUMN max_attempts SET DEFAULT 25")
    with ObanBridge(db_url) as bridge:
        report = bridge.verify()
    assert not report.ok
    text = "\n".join(report.differences)
    assert "oban_jobs_meta_index" in text
    assert "max_attempts" in text and "25" in text


def test_nothing_is_created_without_migrate(empty_db_url: str) -> None:
    from oban_bridge import Job

    with ObanBridge(empty_db_url) as bridge:
        with pytest.raises(SchemaMissingError, match="oban-bridge migrate"):
            bridge.insert(Job.new("W"))
        assert not bridge.verify().exists
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_jobs')").fetchone() == (None,)


# A table shaped the way oban-py 0.7 installs its own (described in ../shared/spec/oban_protocol.md
# section 1: identity id, errors as one jsonb, smallint counters, oban_leaders/oban_producers).
FOREIGN_DDL = """
CREATE TYPE oban_job_state AS ENUM ('available', 'scheduled', 'executing', 'retryable',
  'completed', 'discarded', 'cancelled', 'suspended');
CREATE TABLE oban_jobs (
  id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  state oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  attempt smallint NOT NULL DEFAULT 0,
  max_attempts smallint NOT NULL DEFAULT 20,
  args jsonb NOT NULL DEFAULT '{}',
  errors jsonb NOT NULL DEFAULT '[]'
);
CREATE UNLOGGED TABLE oban_leaders (name text PRIMARY KEY, node text NOT NULL);
CREATE UNLOGGED TABLE oban_producers (uuid uuid PRIMARY KEY, node text NOT NULL);
"""


def test_foreign_schema_is_named_and_left_alone(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(FOREIGN_DDL)
    with ObanBridge(empty_db_url) as bridge:
        report = bridge.verify()
        assert report.exists and not report.ok
        assert report.foreign and "oban-py" in report.foreign and "oban_leaders" in report.foreign
        with pytest.raises(ForeignSchemaError, match="oban-py"):
            bridge.migrate()
    with psycopg.connect(empty_db_url) as conn:
        # migrate left it exactly as it was: no comment, no new columns.
        cols = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'oban_jobs'"
        ).fetchone()
        assert cols == (8,)
