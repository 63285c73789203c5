"""Job.new: Oban.Job.new/2's validation and normalisation (lib/oban/job.ex)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oban_bridge import Job, ObanBridge, ValidationError
from oban_bridge.job import normalize_tags, worker_name

from .conftest import fixture


def test_tags_normalised_like_the_elixir_fixture() -> None:
    row = next(r for r in fixture("jobs_inserted_by_elixir.json")["rows"] if r["args"].get("case") == "tags")
    assert normalize_tags(["Alpha", " beta ", "alpha", "", "gamma"]) == row["tags"]


@given(st.lists(st.text()))
def test_tag_normalisation_properties(tags: list[Any]) -> None:
    out = normalize_tags(tags)
    assert len(out) == len(set(out))
    assert "" not in out
    assert normalize_tags(out) == out  # idempotent
    # Order is first appearance, as Enum.uniq keeps it.
    firsts = []
    for t in tags:
        n = str(t).strip().lower()
        if n and n not in firsts:
            firsts.append(n)
    assert out == firsts


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tags": [1]}, "tags"),  # Ecto's {:array, :string} does not cast numbers
        ({"tags": ["ok", 2.5]}, "tags"),
        ({"schedule_in": 1e12}, "schedule_in"),  # past year 9999: one error, not OverflowError
        ({"schedule_in": 1e300}, "schedule_in"),
        ({"schedule_in": 99999999999999}, "schedule_in"),
        ({"priority": -1}, "priority"),
        ({"priority": 10}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"queue": ""}, "queue"),
        ({"queue": "q" * 128}, "queue"),
        ({"queue": 5}, "queue"),
        ({"tags": "one"}, "tags"),
        ({"tags": [{"a": 1}]}, "tags"),
        ({"meta": [1]}, "meta"),
        ({"meta": {"x": object()}}, "meta"),
        ({"meta": {"score": float("inf")}}, "meta"),
        ({"schedule_in": "soon"}, "schedule_in"),
        ({"schedule_in": float("nan")}, "schedule_in"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"scheduled_at": datetime.now(timezone.utc), "schedule_in": 5}, "schedule_in"),
        ({"state": "running"}, "state"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Job.new("W", {}, **kwargs)
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)


@pytest.mark.parametrize(
    ("worker", "args", "field"),
    [
        ("", {}, "worker"),
        ("w" * 128, {}, "worker"),
        (None, {}, "worker"),
        ("W", [1, 2], "args"),
        ("W", "{}", "args"),
        ("W", {"k": "\x00"}, "args"),
        ("W", {1: "non-string key"}, "args"),
        ("W", {"x": float("nan")}, "args"),
        ("W", {"x": [1, {"y": float("-inf")}]}, "args"),
    ],
)
def test_bad_worker_or_args(worker: Any, args: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Job.new(worker, args)
    assert info.value.field == field


def test_limits_are_inclusive() -> None:
    Job.new("w" * 127, queue="q" * 127, priority=9, max_attempts=1)
    Job.new("W", priority=0)


def test_scheduling_makes_a_job_scheduled_even_in_the_past() -> None:
    # lib/oban/job.ex normalize_state/1: any scheduled_at means :scheduled; the stager makes it
    # available once due.
    assert Job.new("W").state == "available"
    assert Job.new("W", schedule_in=0).state == "scheduled"
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    assert Job.new("W", scheduled_at=past).state == "scheduled"
    naive = datetime(2030, 1, 1, 12, 0)
    assert Job.new("W", scheduled_at=naive).scheduled_at == naive.replace(tzinfo=timezone.utc)
    assert Job.new("W", schedule_in=timedelta(hours=1)).state == "scheduled"


def test_worker_classes_and_functions_are_named() -> None:
    class Mailer:
        __oban_worker__ = "MyApp.Workers.Mailer"

    def render() -> None: ...

    assert worker_name(Mailer) == "MyApp.Workers.Mailer"
    assert worker_name(render).endswith("test_worker_classes_and_functions_are_named.<locals>.render")
    assert Job.new(Mailer).worker == "MyApp.Workers.Mailer"
    # Oban.Worker.to_string("Elixir.MyApp.SomeWorker") == "MyApp.SomeWorker"
    assert Job.new("Elixir.MyApp.SomeWorker").worker == "MyApp.SomeWorker"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8), json_values, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=json_objects, meta=json_objects)
def test_args_and_meta_round_trip_through_postgres(db_url: str, args: dict[str, Any], meta: dict[str, Any]) -> None:
    with ObanBridge(db_url, pool_size=1) as bridge:
        job = bridge.insert(Job.new("RoundTrip", args, meta=meta))
        with bridge.connection() as conn:
            stored = conn.execute("SELECT args, meta FROM oban_jobs WHERE id = %s", [job.id]).fetchone()
            conn.execute("DELETE FROM oban_jobs")
    assert same_json(stored, (args, meta))
    assert same_json((job.args, job.meta), (args, meta))


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values. jsonb keeps numbers as numeric, so 2.5e16 comes back as an integer
    (as Elixir's Jason would decode it too): compare numbers by value."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


@given(st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(), st.integers(2**64, 2**80))
def test_datetimes_in_args_are_written_as_jason_writes_them(utc: datetime, naive: datetime, big: int) -> None:
    """Jason writes a UTC DateTime as DateTime.to_iso8601/1 does, with `Z`, and a NaiveDateTime
    with no offset; so do args inserted from Python (the error stamps the Elixir node wrote, in
    jobs_after_execution.json, end in `Z` too), with or without an integer past 64 bits."""
    elixir_at = next(r for r in fixture("jobs_after_execution.json")["rows"] if r["errors"])["errors"][0]["at"]
    assert elixir_at.endswith("Z") and "+" not in elixir_at
    for args in ({"at": utc, "naive": naive}, {"at": utc, "naive": naive, "big": big}):
        written = Job.new("W", args).args
        assert written["at"].endswith("Z") and "+00:00" not in written["at"]
        assert datetime.fromisoformat(written["at"].replace("Z", "+00:00")) == utc
        assert datetime.fromisoformat(written["naive"]) == naive
