"""The shop's promises, through Django: a receipt job exists iff its order commits (and Elixir
nodes hear of it only then), `manage.py oban_bridge start` runs it with the ORM, and
`manage.py check --database default` checks Oban's tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

HERE = Path(__file__).resolve().parent


def test_the_receipt_job_exists_iff_the_order_commits(shop_db_url: str) -> None:
    from shop.models import Order
    from shop.views import place_order

    from oban_bridge.testing import Testing
    from oban_bridge import ObanBridge

    with psycopg.connect(shop_db_url, autocommit=True) as listener:
        listener.execute('LISTEN "public.oban_insert"')
        with pytest.raises(ValueError):
            place_order(0)
        assert Order.objects.count() == 0
        assert not list(listener.notifies(timeout=0.3, stop_after=1))
        order = place_order(25)
        assert list(listener.notifies(timeout=2, stop_after=1))  # heard once committed
    with ObanBridge(shop_db_url, testing="manual") as oban:
        found = Testing(oban).assert_enqueued(worker="Shop.SendReceipt", args={"order": order.pk})
    assert len(found) == 1


def test_no_notification_before_the_atomic_block_commits(shop_db_url: str) -> None:
    from django.db import transaction

    from oban_bridge import Job
    from oban_bridge.contrib.django import insert

    with psycopg.connect(shop_db_url, autocommit=True) as listener:
        listener.execute('LISTEN "public.oban_insert"')
        with transaction.atomic():
            job = insert(Job.new("Shop.SendReceipt", {"order": 1}))
            assert not list(listener.notifies(timeout=0.3, stop_after=1))
            with psycopg.connect(shop_db_url) as other:  # invisible to others until the commit
                assert other.execute("SELECT count(*) FROM oban_jobs").fetchone() == (0,)
        assert list(listener.notifies(timeout=2, stop_after=1))
    assert job.id is not None


def test_a_job_inserted_in_a_rolled_back_savepoint_is_gone_with_it(shop_db_url: str) -> None:
    """Nested atomic() blocks are savepoints: the job goes with the one it was inserted in."""
    from django.db import transaction

    from oban_bridge import Job
    from oban_bridge.contrib.django import insert

    with transaction.atomic():
        kept = insert(Job.new("Shop.SendReceipt", {"order": "kept"}))
        with pytest.raises(RuntimeError), transaction.atomic():
            insert(Job.new("Shop.SendReceipt", {"order": "gone"}))
            raise RuntimeError("the inner block fails")
        also = insert(Job.new("Shop.SendReceipt", {"order": "after"}))
    with psycopg.connect(shop_db_url) as conn:
        orders = [r[0] for r in conn.execute("SELECT args->>'order' FROM oban_jobs ORDER BY id")]
    assert orders == ["kept", "after"]
    assert kept.id is not None and also.id is not None


def test_a_job_read_back_on_djangos_connection_holds_mappings(shop_db_url: str) -> None:
    """Django's psycopg backend loads jsonb as text on its own connection; the job an insert
    returns (new, a unique conflict, or replaced) still holds args and meta as dicts."""
    from django.db import transaction

    from oban_bridge import Job
    from oban_bridge.contrib.django import insert, insert_all

    big = 2**63 + 1  # past 64 bits: kept whole, as on oban_bridge's own connections
    with transaction.atomic():
        job = insert(Job.new("Shop.SendReceipt", {"order": 1, "big": big}, meta={"k": 1}))
        twin = insert(Job.new("Shop.SendReceipt", {"order": 1, "big": big}, meta={"k": 2}, unique={"period": 60},
                              replace={"available": ["meta"]}))
        again = insert(Job.new("Shop.SendReceipt", {"order": 1, "big": big}, meta={"k": 3}, unique={"period": 60},
                               replace={"available": ["meta"]}))
        (batch,) = insert_all([Job.new("Shop.SendReceipt", {"order": 2})])
    assert job.args == {"order": 1, "big": big} and job.meta == {"k": 1}
    assert again.conflict and again.args == {"order": 1, "big": big} and isinstance(again.meta, dict)
    assert isinstance(twin.meta, dict) and batch.args == {"order": 2}


def test_manage_py_oban_bridge_start_runs_the_job_with_the_orm(shop_db_url: str) -> None:
    from shop.models import Order
    from shop.views import place_order

    order = place_order(40)
    env = {**os.environ, "DATABASE_URL": "", "PYTHONPATH": str(HERE.parent.parent.parent)}
    env.pop("DATABASE_URL")  # the command takes Django's database, nothing else
    node = subprocess.Popen([sys.executable, "manage.py", "oban_bridge", "start"], cwd=HERE, env={
        **env, "DJANGO_SETTINGS_MODULE": "shop_site.settings", "DATABASE_URL": shop_db_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Order.objects.get(pk=order.pk).status != "receipt sent":
            assert node.poll() is None, node.stderr.read() if node.stderr else ""
            time.sleep(0.1)
        assert Order.objects.get(pk=order.pk).status == "receipt sent"
    finally:
        node.send_signal(signal.SIGTERM)
        code = node.wait(60)
    assert code == 0, node.stderr.read() if node.stderr else ""
    with psycopg.connect(shop_db_url) as conn:
        assert conn.execute("SELECT state FROM oban_jobs").fetchone() == ("completed",)


def test_the_system_check_finds_oban_tables_or_says_how_to_make_them(shop_db_url: str) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    assert [e for e in run_checks(databases=["default"]) if e.id.startswith("oban_bridge")] == []
    with override_settings(OBAN_BRIDGE={"prefix": "nowhere"}):
        (warning,) = [e for e in run_checks(databases=["default"]) if e.id.startswith("oban_bridge")]
        # A database check, as Django's own: nothing unless a command names the database.
        assert [e for e in run_checks() if e.id.startswith("oban_bridge")] == []
    assert warning.id == "oban_bridge.W001" and "oban_bridge migrate" in warning.msg + (warning.hint or "")


def test_the_check_leaves_the_callers_transaction_as_it_found_it(shop_db_url: str) -> None:
    """Run inside an open transaction (a TestCase's), the check's own settings must not stay:
    the ORM's next statement still finds the app's tables."""
    from django.core.checks import run_checks
    from django.db import transaction
    from shop.models import Order

    with transaction.atomic():
        assert [e for e in run_checks(databases=["default"]) if e.id.startswith("oban_bridge")] == []
        Order.objects.create(total=1)
        transaction.set_rollback(True)


def test_a_bad_oban_bridge_setting_is_a_check_error_not_a_traceback(shop_db_url: str) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(OBAN_BRIDGE={"queus": "shop:1"}):
        found = [e for e in run_checks() if e.id.startswith("oban_bridge")]
        assert [e for e in run_checks(databases=["default"]) if e.id.startswith("oban_bridge")] == found
    assert [e.id for e in found] == ["oban_bridge.E003"] and "'queus'" in found[0].msg


def test_migrate_oban_writes_itself_into_a_migration_file() -> None:
    """What makemigrations/squashmigrations write must import and pin the version."""
    from django.db.migrations.writer import OperationWriter

    from oban_bridge.contrib.django.operations import MigrateOban

    text, imports = OperationWriter(MigrateOban(), indentation=0).serialize()
    assert text.startswith("oban_bridge.contrib.django.operations.MigrateOban(") and "version=14" in text
    assert imports == {"import oban_bridge.contrib.django.operations"}
    namespace: dict[str, object] = {}
    exec("import oban_bridge.contrib.django.operations\nop = " + text.rstrip().rstrip(","), namespace)  # noqa: S102 - our own output
    assert namespace["op"].version == 14  # type: ignore[attr-defined]


def manage(url: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop_site.settings", "DATABASE_URL": url,
           "PYTHONPATH": str(HERE.parent.parent.parent)}
    return subprocess.run([sys.executable, "manage.py", *argv], cwd=HERE, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def empty_db_url(oban_server_url: str) -> Iterator[str]:
    """A database with nothing in it: no Oban tables, no Django tables."""
    from oban_bridge.testing import database

    with database.database(oban_server_url, None) as url:
        yield url


def test_a_fresh_database_gets_obans_tables_from_manage_py_migrate(empty_db_url: str) -> None:
    """MigrateOban in the shop's migrations: Django's migrate, which runs the database checks
    first, is not stopped by the missing tables it is about to create."""
    done = manage(empty_db_url, "migrate")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_db_url) as conn:
        (comment,) = conn.execute("SELECT obj_description('public.oban_jobs'::regclass, 'pg_class')").fetchone()
    assert comment == "14"
    assert manage(empty_db_url, "check", "--database", "default", "--fail-level", "WARNING").returncode == 0
    back = manage(empty_db_url, "migrate", "shop", "zero")  # leaves Oban's tables: they may be Elixir's
    assert back.returncode == 0, back.stderr
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_jobs') IS NOT NULL").fetchone() == (True,)


def test_manage_py_oban_bridge_migrate_is_not_stopped_by_the_check(empty_db_url: str) -> None:
    done = manage(empty_db_url, "oban_bridge", "migrate")
    assert done.returncode == 0, done.stderr
    assert "from version 0 to 14" in done.stdout
    assert manage(empty_db_url, "check").returncode == 0


def test_check_on_an_unreachable_database(tmp_path: Path) -> None:
    down = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"
    assert manage(down, "check").returncode == 0  # a plain check never connects
    named = manage(down, "check", "--database", "default")
    assert named.returncode == 0 and "oban_bridge.W003" in named.stderr and "Traceback" not in named.stderr


def test_start_options_given_in_any_spelling_win_over_the_settings(shop_db_url: str) -> None:
    """`-qshop:1` or `--node=x` are the user's: the settings' `shop:2` must not replace them, and
    an option left without its value is reported as such."""
    node = subprocess.Popen([sys.executable, "manage.py", "oban_bridge", "start", "-qshop:1", "--node=picked"],
                            cwd=HERE, env={**os.environ, "DJANGO_SETTINGS_MODULE": "shop_site.settings",
                                           "DATABASE_URL": shop_db_url,
                                           "PYTHONPATH": str(HERE.parent.parent.parent)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert node.stderr is not None
        started = ""
        for line in node.stderr:
            if "oban_bridge started" in line:
                started = line
                break
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(60)
    assert "node=picked" in started and "queues={'shop': 1}" in started, started
    missing = manage(shop_db_url, "oban_bridge", "start", "-m")
    assert missing.returncode == 2 and "'-m' requires an argument" in missing.stderr, missing.stderr


def test_workers_unit_test_with_perform_job(shop_db_url: str) -> None:
    from shop.jobs import send_receipt
    from shop.models import Order

    from oban_bridge.testing import perform_job

    order = Order.objects.create(total=5)
    assert perform_job(send_receipt, {"order": order.pk}) is None  # runs in this thread: the test's connection
    order.refresh_from_db()
    assert order.status == "receipt sent"
