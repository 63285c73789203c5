"""badge_forge's tests, written against oban_bridge.testing's public API and its pytest fixtures
only (`oban`: a client in manual mode on a database of its own; `oban_testing`: its helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oban_bridge import ObanBridge
from oban_bridge.testing import Testing, perform_job

from . import jobs


@pytest.fixture(autouse=True)
def app_client(oban: ObanBridge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(jobs, "bridge", oban)  # the app inserts where the test looks
    monkeypatch.setattr(jobs, "OUT_DIR", str(tmp_path))


def test_a_badge_needs_a_name() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        perform_job(jobs.GenerateBadge, {"id": "b1"})
    assert perform_job(jobs.GenerateBadge, {"id": "b1", "name": "Ada"}) is None


def test_a_batch_fans_out_and_drains_with_recursion(oban: ObanBridge, oban_testing: Testing, tmp_path: Path) -> None:
    oban.insert(jobs.forge_batch.new({"batch": 7, "attendees": [  # type: ignore[attr-defined]
        {"id": "a", "name": "Ada"}, {"id": "g", "name": "Grace"}]}))
    summary = oban_testing.drain_queue("badges", with_recursion=True)
    assert summary == {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0, "success": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["badge-a.svg", "badge-g.svg"]
    oban_testing.refute_enqueued(queue="badges")
    # The reminder is the Elixir app's to run: assert it was enqueued, a day out.
    oban_testing.assert_enqueued(worker="BadgeForge.Mailer.Reminder", queue="mailers", args={"batch": 7},
                                 scheduled_in=24 * 3600, delta=5)


def test_scheduled_badges_run_when_drained_with_scheduled(oban: ObanBridge, oban_testing: Testing,
                                                          tmp_path: Path) -> None:
    oban.insert(jobs.GenerateBadge.new({"id": "later", "name": "Lin"}, schedule_in=3600))  # type: ignore[attr-defined]
    assert oban_testing.drain_queue("badges")["success"] == 0  # not due yet
    oban_testing.assert_enqueued(worker=jobs.GenerateBadge, state="scheduled", scheduled_in=3600)
    assert oban_testing.drain_queue("badges", with_scheduled=True)["success"] == 1
    assert (tmp_path / "badge-later.svg").exists()
