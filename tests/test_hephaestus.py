"""Python steps in Hephaestus workflows, against the rows of a real Hephaestus 0.3.1 / hephaestus_oban
0.5.0 run (elixir_interop_fixtures/hephaestus_flow.json, hephaestus_schema.sql)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from click.testing import CliRunner

from oban_bridge import AsyncObanBridge, Job
from oban_bridge.cli import main
from oban_bridge.hephaestus import Async, HandoverError, StepResult, resume, schedule_resume, step
from oban_bridge.hephaestus.names import short_name, underscore
from oban_bridge.hephaestus.steps import STEP_QUEUE, STEP_WORKER
from oban_bridge.term import phash2

from .conftest import fixture, load_dump

FLOW = fixture("hephaestus_flow.json")
WAITING, RESUMED, DONE = FLOW["snapshots"]
INSTANCE = FLOW["instance_id"]
RENDER = "Elixir.Harness.Steps.RenderPdf"
behaviour: dict[str, Any] = {"mode": "ok", "calls": 0}


@step(RENDER, events=["rendered", "failed"], context_keys=["pdf_url", "pages"])
async def render_pdf(ctx: Any) -> Any:
    behaviour["calls"] += 1
    assert ctx.initial == {"name": "Alasdair", "user_id": 42}
    if behaviour["mode"] == "raise":
        raise RuntimeError("the renderer fell over")
    if behaviour["mode"] == "async":
        return Async()
    if behaviour["mode"] == "sleep":
        await asyncio.sleep(5)
    if behaviour["mode"] == "bad_key":
        return StepResult("rendered", context={"not_an_atom_anywhere": 1})
    return StepResult("rendered", context={"pdf_url": "s3://badges/order123.pdf", "pages": 2})


def test_phash2_matches_erlang() -> None:
    samples = fixture("phash2_samples.json")["binaries"]
    assert len(samples) >= 8
    for sample in samples:
        assert phash2(sample["binary"]) == sample["phash2"], sample["binary"][:20]
        assert phash2(sample["binary"], 2**32) == sample["phash2_range_2_32"]


@pytest.mark.parametrize(("module", "short"), [
    ("Elixir.Harness.Steps.RenderPdf", "render_pdf"), ("Elixir.Harness.Workflows.BadgeFlow", "badge_flow"),
    ("MyApp.HTTPClient", "http_client"), ("Elixir.Hephaestus.Steps.Done", "done"), ("Step2Go", "step2_go"),
])
def test_short_names_like_macro_underscore(module: str, short: str) -> None:
    assert short_name(module) == short
    assert underscore("ValidateUser") == "validate_user"


def seed(url: str, snapshot: dict[str, Any]) -> None:
    """The database as the Elixir node left it at `snapshot`."""
    load_dump(url, fixture("hephaestus_schema.sql"))
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("workflow_instances", "hephaestus_step_results", "oban_jobs"):
            for row in snapshot[table]:
                conn.execute(f"INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, %s::json)",  # noqa: S608
                             [json.dumps(row)])
        conn.execute("SELECT setval('oban_jobs_id_seq', (SELECT max(id) FROM oban_jobs))")


def new_rows(url: str, table: str, before: dict[str, Any], key: str = "id") -> list[dict[str, Any]]:
    seen = {r[key] for r in before[table]}
    with psycopg.connect(url) as conn:
        rows = [r[0] for r in conn.execute(f"SELECT row_to_json(t) FROM {table} t")]  # noqa: S608
    return [r for r in rows if r[key] not in seen]


def expected_new(table: str, worker: str | None = None) -> dict[str, Any]:
    seen = {r["id"] for r in WAITING[table]}
    rows = [r for r in RESUMED[table] if r["id"] not in seen and (worker is None or r.get("worker") == worker)]
    assert len(rows) == 1
    return rows[0]


def assert_like_elixir(step_result: dict[str, Any], advance: dict[str, Any], context: dict[str, Any]) -> None:
    theirs = expected_new("hephaestus_step_results")
    for column in ("instance_id", "step_ref", "event", "metadata_updates", "workflow_version"):
        assert step_result[column] == theirs[column], column
    assert step_result["context_updates"] == context
    assert step_result["processed"] is False  # Elixir's AdvanceWorker marks it once applied
    their_job = expected_new("oban_jobs", "HephaestusOban.AdvanceWorker")
    for column in ("worker", "queue", "args", "meta", "tags", "max_attempts", "priority"):
        assert advance[column] == their_job[column], column
    assert advance["state"] == "available"


async def test_resume_writes_what_resume_worker_wrote(db_url: str) -> None:
    seed(db_url, WAITING)
    async with AsyncObanBridge(db_url) as oban:
        result = await resume(oban, INSTANCE, "rendered", events=["rendered"])
    assert result.written and result.advance_job is not None and not result.advance_job.conflict
    [step_result] = new_rows(db_url, "hephaestus_step_results", WAITING)
    [advance] = new_rows(db_url, "oban_jobs", WAITING)
    assert_like_elixir(step_result, advance, {})


async def test_python_step_runs_and_hands_over(db_url: str) -> None:
    seed(db_url, WAITING)
    behaviour.update(mode="ok", calls=0)
    args = {"instance_id": INSTANCE, "step_ref": RENDER, "workflow": "Elixir.Harness.Workflows.BadgeFlow",
            "workflow_version": 1, "config_key": "Elixir.Harness.Heph"}
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 2}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, args, queue=STEP_QUEUE))
        await wait_state(db_url, job.id, "completed")
        # Run the same step job again (a retry after a crash): nothing is written twice.
        again = await oban.insert(Job.new(STEP_WORKER, args, queue=STEP_QUEUE))
        await wait_state(db_url, again.id, "completed")
    assert behaviour["calls"] == 1
    rows = new_rows(db_url, "oban_jobs", WAITING)
    advance = [r for r in rows if r["worker"] == "HephaestusOban.AdvanceWorker"]
    [step_result] = new_rows(db_url, "hephaestus_step_results", WAITING)
    assert len(advance) == 1
    assert_like_elixir(step_result, advance[0], {"pdf_url": "s3://badges/order123.pdf", "pages": 2})


async def test_existing_advance_worker_is_not_duplicated(db_url: str) -> None:
    seed(db_url, WAITING)
    for state in ("available", "executing"):
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM hephaestus_step_results WHERE NOT processed")
            conn.execute("DELETE FROM oban_jobs WHERE id > 5")
            conn.execute(
                "INSERT INTO oban_jobs (state, queue, worker, args, attempt) VALUES (%s, 'hephaestus', "
                "'HephaestusOban.AdvanceWorker', %s::jsonb, %s) RETURNING id",
                [state, json.dumps({"instance_id": INSTANCE, "config_key": "Elixir.Harness.Heph",
                                    "workflow": "Elixir.Harness.Workflows.BadgeFlow", "workflow_version": 1}),
                 1 if state == "executing" else 0])
        async with AsyncObanBridge(db_url) as oban:
            result = await resume(oban, INSTANCE, "rendered", events=["rendered"])
        assert result.written and result.advance_job is not None and result.advance_job.conflict
        with psycopg.connect(db_url) as conn:
            count = conn.execute("SELECT count(*) FROM oban_jobs WHERE worker = 'HephaestusOban.AdvanceWorker' "
                                 "AND state IN ('available', 'executing')").fetchone()
        assert count == (1,)


async def test_async_step_then_resume(db_url: str) -> None:
    seed(db_url, WAITING)
    behaviour.update(mode="async", calls=0)
    args = {"instance_id": INSTANCE, "step_ref": RENDER, "workflow": "Elixir.Harness.Workflows.BadgeFlow",
            "workflow_version": 1, "config_key": "Elixir.Harness.Heph"}
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, args, queue=STEP_QUEUE))
        await wait_state(db_url, job.id, "completed")
        assert new_rows(db_url, "hephaestus_step_results", WAITING) == []
        result = await resume(oban, INSTANCE, "rendered", context={"pdf_url": "s3://x"})
    assert result.written
    [step_result] = new_rows(db_url, "hephaestus_step_results", WAITING)
    assert step_result["context_updates"] == {"pdf_url": "s3://x"}


async def test_step_not_yet_waiting_is_snoozed(db_url: str) -> None:
    seed(db_url, WAITING)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE workflow_instances SET status = 'running', "
                     "state = jsonb_set(state, '{current_step}', 'null') WHERE id = %s", [INSTANCE])
    behaviour.update(mode="ok", calls=0)
    args = {"instance_id": INSTANCE, "step_ref": RENDER, "workflow": "Elixir.Harness.Workflows.BadgeFlow",
            "workflow_version": 1, "config_key": "Elixir.Harness.Heph"}
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, args, queue=STEP_QUEUE))
        await wait_state(db_url, job.id, "scheduled")
    assert behaviour["calls"] == 0
    with psycopg.connect(db_url) as conn:
        # A snooze costs no attempt (2.23.1: max_attempts + 1).
        assert conn.execute("SELECT max_attempts FROM oban_jobs WHERE id = %s", [job.id]).fetchone() == (21,)


async def test_retries_then_the_workflow_fails_the_hephaestus_way(db_url: str) -> None:
    seed(db_url, WAITING)
    behaviour.update(mode="raise", calls=0)
    args = {"instance_id": INSTANCE, "step_ref": RENDER, "workflow": "Elixir.Harness.Workflows.BadgeFlow",
            "workflow_version": 1, "config_key": "Elixir.Harness.Heph"}
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, args, queue=STEP_QUEUE, max_attempts=2))
        await wait_state(db_url, job.id, "retryable")
        with psycopg.connect(db_url, autocommit=True) as conn:  # skip the backoff
            conn.execute("UPDATE oban_jobs SET state = 'available', scheduled_at = now() WHERE id = %s", [job.id])
        await wait_state(db_url, job.id, "discarded")
    assert behaviour["calls"] == 2
    rows = new_rows(db_url, "oban_jobs", WAITING)
    [discarded] = [r for r in rows if r["worker"] == "HephaestusOban.ExecuteStepWorker"]
    assert discarded["state"] == "discarded" and discarded["queue"] == "hephaestus"
    assert discarded["args"]["instance_id"] == INSTANCE and discarded["args"]["step_ref"] == RENDER
    assert "the renderer fell over" in discarded["errors"][0]["error"]
    [advance] = [r for r in rows if r["worker"] == "HephaestusOban.AdvanceWorker"]
    # FailureHandler's AdvanceWorker: no workflow_version in args, meta names the failed step.
    assert advance["args"] == {"instance_id": INSTANCE, "config_key": "Elixir.Harness.Heph",
                               "workflow": "Elixir.Harness.Workflows.BadgeFlow"}
    assert advance["meta"]["step"] == "render_pdf" and advance["tags"] == ["badge_flow", "badges"]
    assert new_rows(db_url, "hephaestus_step_results", WAITING) == []


async def test_bad_context_keys_and_events_write_nothing(db_url: str) -> None:
    seed(db_url, WAITING)
    async with AsyncObanBridge(db_url) as oban:
        with pytest.raises(HandoverError, match="not atoms the Elixir app declares"):
            await resume(oban, INSTANCE, "rendered", context={"pdf_url": {"nested_unknown": 1}})
        with pytest.raises(HandoverError, match="does not declare event"):
            await resume(oban, INSTANCE, "exploded")
        with pytest.raises(HandoverError, match="no workflow instance"):
            await resume(oban, "nope::1", "rendered")
        # Keys Elixir already stored (user_id, checked, ...) are known atoms: accepted.
        ok = await resume(oban, INSTANCE, "rendered", context={"checked": False})
        assert ok.written
        with pytest.raises(HandoverError, match="not waiting"):
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("UPDATE workflow_instances SET status = 'completed' WHERE id = %s", [INSTANCE])
            await resume(oban, INSTANCE, "rendered")
    assert len(new_rows(db_url, "hephaestus_step_results", WAITING)) == 1


async def test_schedule_resume_inserts_a_durable_resume_worker_job(db_url: str) -> None:
    seed(db_url, WAITING)
    async with AsyncObanBridge(db_url) as oban:
        job = await schedule_resume(oban, INSTANCE, event="rendered", schedule_in=3600)
    theirs = next(r for r in RESUMED["oban_jobs"] if r["worker"] == "HephaestusOban.ResumeWorker")
    assert (job.worker, job.queue, job.args, job.meta, job.tags, job.max_attempts) == (
        theirs["worker"], theirs["queue"], theirs["args"], theirs["meta"], theirs["tags"], theirs["max_attempts"])
    assert job.state == "scheduled"


def test_cli_resume_and_its_errors(db_url: str) -> None:
    seed(db_url, WAITING)
    approve = "Elixir.Harness.Steps.Approve"  # an Elixir step no @step in this process declares
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE workflow_instances SET state = jsonb_set(jsonb_set(state, '{current_step}', %s::jsonb),"
                     " '{active_steps}', %s::jsonb) WHERE id = %s",
                     [json.dumps(approve), json.dumps([approve]), INSTANCE])
    base = ["--database-url", db_url, "hephaestus", "resume"]
    runner = CliRunner()
    bad = runner.invoke(main, [*base, "nope::1", "rendered", "--events", "rendered"])
    assert bad.exit_code == 2 and "no workflow instance" in bad.output
    bad = runner.invoke(main, [*base, INSTANCE, "rendered"])
    assert bad.exit_code == 2 and "cannot be checked" in bad.output
    assert "--events rendered[,...]" in bad.output and "events=['rendered', ...]" in bad.output
    bad = runner.invoke(main, [*base, INSTANCE, "exploded", "--events", "rendered"])
    assert bad.exit_code == 2 and "does not declare event" in bad.output
    bad = runner.invoke(main, [*base, INSTANCE, "rendered", "--events", "rendered", "--context", '{"zzz_unknown": 1}'])
    assert bad.exit_code == 2 and "String.to_existing_atom" in bad.output
    assert new_rows(db_url, "hephaestus_step_results", WAITING) == []
    ok = runner.invoke(main, [*base, INSTANCE, "rendered", "--events", "rendered,failed", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["written"] and report["advance_job"]["worker"] == "HephaestusOban.AdvanceWorker"
    again = runner.invoke(main, [*base, INSTANCE, "rendered", "--events", "rendered"])
    assert again.exit_code == 0 and "nothing written" in again.output


async def wait_state(url: str, job_id: int | None, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job_id]).fetchone()
        if row and row[0] == state:
            return
        assert time.monotonic() < deadline, f"job {job_id} is {row}, not {state}"
        await asyncio.sleep(0.05)


def failure_rows(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two rows hephaestus_oban's AdvanceWorker (detect_discarded_steps/2) and FailureHandler
    leave when a step is out of attempts: a discarded ExecuteStepWorker and an AdvanceWorker."""
    rows = new_rows(url, "oban_jobs", WAITING)
    [discarded] = [r for r in rows if r["worker"] == "HephaestusOban.ExecuteStepWorker"]
    [advance] = [r for r in rows if r["worker"] == "HephaestusOban.AdvanceWorker"]
    assert discarded["state"] == "discarded" and discarded["queue"] == "hephaestus"
    assert discarded["args"]["instance_id"] == INSTANCE and discarded["args"]["step_ref"] == RENDER
    assert advance["args"] == {"instance_id": INSTANCE, "config_key": "Elixir.Harness.Heph",
                               "workflow": "Elixir.Harness.Workflows.BadgeFlow"}
    assert advance["state"] == "available" and advance["meta"]["step"] == "render_pdf"
    assert new_rows(url, "hephaestus_step_results", WAITING) == []
    return discarded, advance


STEP_ARGS = {"instance_id": INSTANCE, "step_ref": RENDER, "workflow": "Elixir.Harness.Workflows.BadgeFlow",
             "workflow_version": 1, "config_key": "Elixir.Harness.Heph"}


async def test_a_refused_result_fails_the_workflow_at_once(db_url: str) -> None:
    """An undeclared context key cannot be loaded by Elixir and cannot succeed on a retry: the
    workflow fails on the first attempt, and the error says which key was refused."""
    seed(db_url, WAITING)
    behaviour.update(mode="bad_key", calls=0)
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, STEP_ARGS, queue=STEP_QUEUE, max_attempts=5))
        await wait_state(db_url, job.id, "discarded")
    assert behaviour["calls"] == 1
    discarded, _ = failure_rows(db_url)
    assert "not_an_atom_anywhere" in discarded["errors"][0]["error"]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT attempt, errors FROM oban_jobs WHERE id = %s", [job.id]).fetchone()
    assert row is not None and row[0] == 1 and "not_an_atom_anywhere" in row[1][0]["error"]


async def test_a_step_timing_out_on_its_last_attempt_fails_the_workflow(db_url: str) -> None:
    from oban_bridge.hephaestus.steps import registered

    seed(db_url, WAITING)
    behaviour.update(mode="sleep", calls=0)
    spec = registered(RENDER)
    assert spec is not None
    spec.timeout = 0.3
    try:
        async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
            job = await oban.insert(Job.new(STEP_WORKER, STEP_ARGS, queue=STEP_QUEUE, max_attempts=1))
            await wait_state(db_url, job.id, "discarded")
    finally:
        spec.timeout = None
    discarded, _ = failure_rows(db_url)
    assert "timed out after 300ms" in discarded["errors"][0]["error"]


async def test_a_step_rescued_with_no_attempts_left_fails_the_workflow(db_url: str) -> None:
    """Its node was SIGKILLed on the last attempt: the lifeline discards the job, and since
    nothing ran to see that attempt fail, it tells the workflow."""
    from oban_bridge.plugins.lifeline import Lifeline
    from oban_bridge.producer import producer_uuid

    seed(db_url, WAITING)
    with psycopg.connect(db_url, autocommit=True) as conn:
        got = conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, attempt, max_attempts, attempted_by, attempted_at) "
            "VALUES ('executing', %s, %s, %s, 3, 3, ARRAY['dead-node', %s], timezone('UTC', now()) - interval '1 minute') "
            "RETURNING id", [STEP_QUEUE, STEP_WORKER, json.dumps(STEP_ARGS), producer_uuid()]).fetchone()
    assert got is not None
    async with AsyncObanBridge(db_url, queues={"other": 1}, plugins=[Lifeline(orphan_grace=0.2)], poll_interval=0.1):
        await wait_state(db_url, got[0], "discarded")
        await asyncio.sleep(0.3)
    discarded, _ = failure_rows(db_url)
    assert "rescued after its node stopped" in discarded["errors"][0]["error"]


async def test_joining_an_executing_advance_worker_never_loses_the_result(db_url: str) -> None:
    """The window: an AdvanceWorker has committed its transaction (it read the results before
    ours) but its row is still `executing`. The hand-over joins it; once it is acked without
    applying our result, a fresh AdvanceWorker is enqueued to apply it."""
    seed(db_url, WAITING)
    behaviour.update(mode="ok", calls=0)
    advance_args = {"instance_id": INSTANCE, "config_key": "Elixir.Harness.Heph",
                    "workflow": "Elixir.Harness.Workflows.BadgeFlow", "workflow_version": 1}
    with psycopg.connect(db_url, autocommit=True) as conn:
        got = conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, attempt, attempted_by, attempted_at) "
            "VALUES ('executing', 'hephaestus', 'HephaestusOban.AdvanceWorker', %s, 1, ARRAY['vm', %s], "
            "timezone('UTC', now())) RETURNING id", [json.dumps(advance_args), str(uuid4())]).fetchone()
    assert got is not None
    running_advance = got[0]
    async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
        job = await oban.insert(Job.new(STEP_WORKER, STEP_ARGS, queue=STEP_QUEUE))
        await wait_until(lambda: len(new_rows(db_url, "hephaestus_step_results", WAITING)) == 1)
        await asyncio.sleep(1.5)
        # Joined, not duplicated, while the executing one may still apply it.
        assert [r["id"] for r in live_advances(db_url)] == [running_advance]
        with psycopg.connect(db_url, autocommit=True) as conn:  # Elixir acks it: our result unapplied
            conn.execute("UPDATE oban_jobs SET state = 'completed', completed_at = timezone('UTC', now()) "
                         "WHERE id = %s", [running_advance])
        await wait_until(lambda: [r["state"] for r in live_advances(db_url)] == ["available"], timeout=10)
        await wait_state(db_url, job.id, "completed")
    [fresh] = live_advances(db_url)
    assert fresh["args"] == advance_args and fresh["queue"] == "hephaestus"
    assert [r["processed"] for r in new_rows(db_url, "hephaestus_step_results", WAITING)] == [False]


def live_advances(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT row_to_json(j) FROM oban_jobs j WHERE worker = 'HephaestusOban.AdvanceWorker' "
            "AND state IN ('available', 'scheduled', 'executing', 'retryable') ORDER BY id")]


async def wait_until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_cli_resume_accepts_an_event_the_step_already_produced(db_url: str) -> None:
    """No @step and no --events, but Hephaestus stored this step's event before (an earlier,
    processed result): Elixir knows the atom, so it is accepted; other events are still refused."""
    seed(db_url, WAITING)
    approve = "Elixir.Harness.Steps.Approve"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE workflow_instances SET state = jsonb_set(jsonb_set(state, '{current_step}', %s::jsonb),"
                     " '{active_steps}', %s::jsonb) WHERE id = %s",
                     [json.dumps(approve), json.dumps([approve]), INSTANCE])
        conn.execute("INSERT INTO hephaestus_step_results (id, instance_id, step_ref, event, context_updates, "
                     "metadata_updates, processed, workflow_version, inserted_at) "
                     "SELECT gen_random_uuid(), %s, %s, 'approved', '{}', '{}', true, 1, now()", [INSTANCE, approve])
    base = ["--database-url", db_url, "hephaestus", "resume"]
    unknown = CliRunner().invoke(main, [*base, INSTANCE, "rejected"])
    assert unknown.exit_code == 2 and "(seen: approved)" in unknown.output
    ok = CliRunner().invoke(main, [*base, INSTANCE, "approved", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["written"]


def _dead_step_job(url: str) -> int:
    from oban_bridge.producer import producer_uuid

    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute(
            "INSERT INTO oban_jobs (state, queue, worker, args, attempt, max_attempts, attempted_by, attempted_at) "
            "VALUES ('executing', %s, %s, %s, 3, 3, ARRAY['dead-node', %s], timezone('UTC', now()) - interval '1 minute') "
            "RETURNING id", [STEP_QUEUE, STEP_WORKER, json.dumps(STEP_ARGS), producer_uuid()]).fetchone()
    assert got is not None
    return int(got[0])


@pytest.mark.parametrize("snapshot", ["handed_over", "completed"])
async def test_a_rescued_step_whose_result_landed_or_whose_workflow_ended_fails_nothing(
        db_url: str, snapshot: str) -> None:
    """The node died after the hand-over committed but before the ack (or the workflow has since
    completed): the discarded job must not fail a workflow that has its result."""
    from oban_bridge.plugins.lifeline import Lifeline

    seed(db_url, WAITING if snapshot == "handed_over" else DONE)
    before = WAITING if snapshot == "handed_over" else DONE
    if snapshot == "handed_over":
        async with AsyncObanBridge(db_url) as oban:
            await resume(oban, INSTANCE, "rendered", events=["rendered"])
    job_id = _dead_step_job(db_url)
    async with AsyncObanBridge(db_url, queues={"other": 1}, plugins=[Lifeline(orphan_grace=0.2)], poll_interval=0.1):
        await wait_state(db_url, job_id, "discarded")
        await asyncio.sleep(0.3)
    added = [r["worker"] for r in new_rows(db_url, "oban_jobs", before)]
    assert "HephaestusOban.ExecuteStepWorker" not in added
    assert added.count("HephaestusOban.AdvanceWorker") == (1 if snapshot == "handed_over" else 0)


async def test_a_timeout_during_the_hand_over_on_the_last_attempt_fails_the_workflow(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from oban_bridge.hephaestus import steps
    from oban_bridge.hephaestus.steps import registered

    real = steps.handover

    async def slow_handover(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.0)
        return await real(*args, **kwargs)

    monkeypatch.setattr(steps, "handover", slow_handover)
    seed(db_url, WAITING)
    behaviour.update(mode="ok", calls=0)
    spec = registered(RENDER)
    assert spec is not None
    spec.timeout = 0.3
    try:
        async with AsyncObanBridge(db_url, queues={STEP_QUEUE: 1}, poll_interval=0.1) as oban:
            job = await oban.insert(Job.new(STEP_WORKER, STEP_ARGS, queue=STEP_QUEUE, max_attempts=1))
            await wait_state(db_url, job.id, "discarded")
            await asyncio.sleep(0.3)
    finally:
        spec.timeout = None
    discarded, _ = failure_rows(db_url)
    assert "timed out after 300ms" in discarded["errors"][0]["error"]
