"""The shop's promises, through Django: a receipt job exists iff its order commits (and Elixir
nodes hear of it only then), `manage.py oban_bridge start` runs it with the ORM, and
`manage.py check --database default` checks Oban's tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
        (error,) = [e for e in run_checks(databases=["default"]) if e.id.startswith("oban_bridge")]
    assert error.id == "oban_bridge.E001" and "oban-bridge migrate" in error.msg + (error.hint or "")


def test_workers_unit_test_with_perform_job(shop_db_url: str) -> None:
    from shop.jobs import send_receipt
    from shop.models import Order

    from oban_bridge.testing import perform_job

    order = Order.objects.create(total=5)
    assert perform_job(send_receipt, {"order": order.pk}) is None  # runs in this thread: the test's connection
    order.refresh_from_db()
    assert order.status == "receipt sent"
