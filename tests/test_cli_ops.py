"""`jobs`, `queues`, `top`, `enqueue --file` and pyproject settings, against a real PostgreSQL and
the signals and gossip a real Elixir node sent (elixir_interop_fixtures/notifications.jsonl)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from oban_bridge import AsyncObanBridge, Job, ObanBridge
from oban_bridge.cli import main

from .conftest import fixture


def cli(url: str, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--database-url", url, *args], input=input)


@pytest.fixture
def seeded(db_url: str) -> str:
    with ObanBridge(db_url) as oban:
        oban.insert_all([
            Job.new("MyApp.Mailer", {"to": "a", "n": 1}, queue="mailers", tags=["Mail"], meta={"team": "growth"}),
            Job.new("MyApp.Mailer", {"to": "b", "n": 2}, queue="mailers", meta={"team": "ops"}),
            Job.new("badge_forge.Render", {"id": 7}, queue="badges", schedule_in=3600),
            Job.new("badge_forge.Render", {"id": 8}, queue="badges"),
        ])
        with oban.connection() as conn:
            conn.execute("UPDATE oban_jobs SET state = 'discarded', discarded_at = now(), attempt = 20, "
                         "errors = ARRAY['{\"attempt\": 20, \"at\": \"2026-01-01T00:00:00.000000Z\", "
                         "\"error\": \"** (RuntimeError) boom\"}'::jsonb] WHERE id = 4")
    return db_url


def test_list_filters_and_json_schema(seeded: str) -> None:
    out = cli(seeded, "jobs", "list", "--json")
    jobs = json.loads(out.output)
    assert [j["id"] for j in jobs] == [4, 3, 2, 1]
    assert set(jobs[0]) == {"id", "state", "queue", "worker", "args", "meta", "tags", "priority", "attempt",
                            "max_attempts", "errors", "attempted_by", "inserted_at", "scheduled_at", "attempted_at",
                            "completed_at", "discarded_at", "cancelled_at", "conflict"}
    ids = lambda *a: [j["id"] for j in json.loads(cli(seeded, "jobs", "list", "--json", *a).stdout)]  # noqa: E731
    assert ids("--queue", "mailers", "--order", "id") == [1, 2]
    assert ids("--state", "scheduled") == [3]
    assert ids("--worker", "Elixir.MyApp.Mailer", "--limit", "1") == [2]
    assert ids("--tag", "MAIL") == [1]
    assert ids("--meta", "team=ops") == [2]
    assert ids("--args", "n=1") == [1]
    assert ids("--args", "id=7", "--state", "scheduled") == [3]
    table = cli(seeded, "jobs", "list", "--queue", "badges")
    assert table.exit_code == 0 and "badge_forge.Render" in table.output and "state" in table.output


def test_filters_are_values_never_sql(seeded: str) -> None:
    for args in (["--queue", "x'; DROP TABLE oban_jobs; --"], ["--worker", "\" OR 1=1 --"],
                 ["--meta", "a'); DELETE FROM oban_jobs; --=1"], ["--tag", "'}"]):
        out = cli(seeded, "jobs", "list", "--json", *args)
        assert out.exit_code == 0 and json.loads(out.output) == []
    out = cli(seeded, "jobs", "delete", "--queue", "x' OR '1'='1", "--yes")
    assert "0 job(s)" in out.output
    with psycopg.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (4,)


def test_show_decodes_errors_and_recorded_output(seeded: str) -> None:
    # %{"a" => 1, "b" => "two"} as :erlang.term_to_binary wrote it; Oban stores it unpadded.
    sample = next(s for s in fixture("etf_samples.json")["samples"] if s["description"] == "string-keyed map")
    encoded = sample["etf_base64"]
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET meta = meta || %s::jsonb WHERE id = 1",
                     [json.dumps({"recorded": True, "return": encoded.rstrip("=")})])
    shown = cli(seeded, "jobs", "show", "4")
    assert shown.exit_code == 0 and "** (RuntimeError) boom" in shown.output and "attempt 20" in shown.output
    data = json.loads(cli(seeded, "jobs", "show", "1", "--json").output)
    assert data["recorded"] == {"a": 1, "b": "two"}
    missing = cli(seeded, "jobs", "show", "999")
    assert missing.exit_code == 1 and "no job with id 999" in missing.output


def test_retry_cancel_delete(seeded: str) -> None:
    out = cli(seeded, "jobs", "retry", "4", "--json")
    assert json.loads(out.output) == {"action": "retry", "count": 1, "jobs": [
        {"id": 4, "queue": "badges", "previous_state": "discarded"}]}
    with psycopg.connect(seeded) as conn:
        row = conn.execute("SELECT state::text, max_attempts, discarded_at FROM oban_jobs WHERE id = 4").fetchone()
    assert row == ("available", 21, None)  # GREATEST(max_attempts, attempt + 1), as Oban
    # Bulk by filter asks first; declining changes nothing.
    declined = cli(seeded, "jobs", "cancel", "--queue", "mailers", input="n\n")
    assert declined.exit_code == 1
    assert cli(seeded, "jobs", "cancel", "--queue", "mailers", input="y\n").output.strip().endswith("2 job(s) changed")
    assert "1 job(s) changed" in cli(seeded, "jobs", "delete", "3", "--yes").output
    skipped = cli(seeded, "jobs", "retry", "999")
    assert skipped.exit_code == 1 and "0 job(s) changed" in skipped.output and "no job with id 999" in skipped.output
    both = cli(seeded, "jobs", "cancel", "1", "99999")  # 1 exists (already cancelled above), 99999 does not
    assert both.exit_code == 1 and "no job with id 99999" in both.output and "cancel leaves alone): 1" in both.output
    nothing = cli(seeded, "jobs", "delete")
    assert nothing.exit_code == 2 and "give job ids or at least one filter" in nothing.output


def test_cancelling_an_executing_job_signals_pkill(db_url: str) -> None:
    with ObanBridge(db_url) as oban:
        job = oban.insert(Job.new("Elixir.Slow", {}, queue="slow"))
        with oban.connection() as conn:
            conn.execute("UPDATE oban_jobs SET state = 'executing', attempt = 1, attempted_at = now() WHERE id = %s", [job.id])
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "public.oban_signal"')
        assert "1 job(s)" in cli(db_url, "jobs", "cancel", str(job.id)).output
        heard = [n.payload for n in listener.notifies(timeout=0.3)]
    assert heard == [json.dumps({"action": "pkill", "job_id": job.id}, separators=(",", ":"))]


def test_queue_signals_are_byte_for_byte_elixirs(db_url: str) -> None:
    elixir = [n["payload"] for n in fixture("notifications.jsonl") if n["channel"] == "public.oban_signal"][:5]
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "public.oban_signal"')
        for args in (["pause", "elixir"], ["scale", "elixir", "--limit", "7"], ["resume", "elixir"],
                     ["pause", "*"], ["resume", "*"]):
            assert cli(db_url, "queues", *args, "--listen", "0").exit_code == 0
        heard = [n.payload for n in listener.notifies(timeout=0.3)]
        assert heard == elixir
        cli(db_url, "queues", "pause", "badges", "--node", "worker-1", "--name", "ObanBridge", "--listen", "0")
        [scoped] = [n.payload for n in listener.notifies(timeout=0.3)]
    assert json.loads(scoped)["ident"] == "ObanBridge.worker-1"
    bad = cli(db_url, "queues", "scale", "elixir")
    assert bad.exit_code == 2 and "--limit" in bad.output


def test_node_scoped_signals_reach_python_nodes_without_a_name_and_warn_when_nobody_runs_the_queue(
        db_url: str) -> None:
    async def scenario() -> tuple[Any, Any, Any, bool, int]:
        async with AsyncObanBridge(db_url, queues={"media": 2, "mail": 1}, node="py-node") as oban:
            runtime = oban.runtime
            assert runtime is not None
            paused = await asyncio.to_thread(cli, db_url, "queues", "pause", "media", "--node", "py-node")
            await asyncio.sleep(0.3)
            scaled = await asyncio.to_thread(cli, db_url, "queues", "scale", "media", "--limit", "9", "--node",
                                             "py-node", "--json")
            await asyncio.sleep(0.3)
            nobody = await asyncio.to_thread(cli, db_url, "queues", "pause", "nosuchqueue")
            await asyncio.sleep(0.3)
            return paused, scaled, nobody, runtime.producers["media"].paused, runtime.producers["media"].limit

    paused, scaled, nobody, is_paused, limit = asyncio.run(scenario())
    assert paused.exit_code == 0 and "warning" not in paused.stderr, paused.output
    assert "ObanBridge.py-node" in paused.stdout and "Oban.py-node" in paused.stdout
    assert (is_paused, limit) == (True, 9)
    assert json.loads(scaled.stdout)["nodes"] == ["py-node"]
    assert nobody.exit_code == 0 and "no node checked in with queue 'nosuchqueue'" in nobody.stderr
    assert "sent pause" in nobody.stdout
    star = cli(db_url, "queues", "scale", "*", "--limit", "3", "--listen", "0")
    assert star.exit_code == 2 and "only pause and resume take *" in star.output


def test_gossip_checks_have_elixirs_shape(db_url: str) -> None:
    elixir = next(json.loads(n["payload"]) for n in fixture("notifications.jsonl") if n["channel"] == "public.oban_gossip")
    [theirs] = elixir["checks"]

    async def heard() -> dict[str, Any]:
        async with AsyncObanBridge(db_url, queues={"badges": 3}, node="py-node"):
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute('LISTEN "public.oban_gossip"')
                async for note in conn.notifies(timeout=3):
                    return json.loads(note.payload)  # type: ignore[no-any-return]
        raise AssertionError("no gossip")

    ours = asyncio.run(heard())
    [check] = ours["checks"]
    assert sorted(check) == sorted(theirs)
    for key, value in theirs.items():
        assert type(check[key]) is type(value) or value is None, key
    assert (check["queue"], check["limit"], check["node"], check["name"], check["paused"]) == (
        "badges", 3, "py-node", "ObanBridge", False)
    assert check["started_at"].endswith("Z") and len(check["started_at"]) == len(theirs["started_at"])


def test_queues_lists_counts_and_python_nodes(seeded: str) -> None:
    async def listing() -> list[dict[str, Any]]:
        async with AsyncObanBridge(seeded, queues={"badges": 2}, node="py-node"):
            return json.loads(await asyncio.to_thread(lambda: cli(seeded, "queues", "--json").output))  # type: ignore[no-any-return]

    found = {q["queue"]: q for q in asyncio.run(listing())}
    assert found["mailers"]["counts"]["available"] == 2
    assert [n["node"] for n in found["badges"]["nodes"]] == ["py-node"]
    assert found["badges"]["nodes"][0]["limit"] == 2
    frame = cli(seeded, "top", "--once")
    assert frame.exit_code == 0 and "mailers" in frame.output and "completed/s" in frame.output


def test_enqueue_file_is_validated_then_one_transaction(db_url: str, tmp_path: Path) -> None:
    good = tmp_path / "jobs.jsonl"
    good.write_text("\n".join(json.dumps(j) for j in [
        {"worker": "MyApp.A", "args": {"i": 1}, "queue": "q", "tags": ["x"]},
        {"worker": "MyApp.B", "args": {"k": 1}, "unique": {"period": 60}},
        {"worker": "MyApp.B", "args": {"k": 1}, "unique": {"period": 60}},
        {"worker": "MyApp.C", "scheduled_at": "2030-01-01T00:00:00Z"},
    ]) + "\n")
    out = cli(db_url, "enqueue", "--file", str(good), "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert (report["inserted"], report["conflicts"]) == (3, 1)
    bad_lines = ['{"worker": "MyApp.A"}', '{"worker": "MyApp.A", "priority": -1}', "not json"]
    for bad, message in ((bad_lines[:2], "line 2: priority"), ([bad_lines[0], bad_lines[2]], "line 2"),
                         (['{"args": {}}'], "missing worker"), (['{"worker": "W", "colour": 1}'], "unknown field")):
        result = cli(db_url, "enqueue", "--file", "-", input="\n".join(bad) + "\n")
        assert result.exit_code == 2 and message in result.output, result.output
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (3,)


def test_settings_from_pyproject(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / "pyproject.toml").write_text(f"[tool.oban_bridge]\ndatabase_url = {json.dumps(db_url)}\nprefix = \"public\"\n")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["verify"])
    assert out.exit_code == 0 and "identical" in out.output
    (tmp_path / "pyproject.toml").write_text("[tool.oban_bridge]\ncolour = 1\n")
    bad = CliRunner().invoke(main, ["verify"])
    assert bad.exit_code == 2 and "unknown [tool.oban_bridge] setting" in bad.output


def test_enqueue_file_takes_the_options_as_defaults_and_reports_every_bad_line(db_url: str) -> None:
    lines = [
        {"worker": "MyApp.A", "args": {"i": 1}},
        {"worker": "MyApp.B", "queue": "own", "priority": 0, "tags": ["x"], "meta": {"m": 1}},
        {"worker": "MyApp.C", "scheduled_at": "2030-01-01T00:00:00Z"},
    ]
    given = cli(db_url, "enqueue", "--file", "-", "--queue", "imports", "--priority", "3", "--tag", "nightly",
                "--meta", '{"src": "cli"}', "--schedule-in", "60", "--max-attempts", "5", "--json",
                input="\n".join(json.dumps(x) for x in lines) + "\n")
    assert given.exit_code == 0, given.output
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT worker, queue, priority, tags, meta, max_attempts, state::text,"
                            " scheduled_at > now() + interval '30 seconds' FROM oban_jobs ORDER BY id").fetchall()
    assert rows == [
        ("MyApp.A", "imports", 3, ["nightly"], {"src": "cli"}, 5, "scheduled", True),
        ("MyApp.B", "own", 0, ["x"], {"m": 1}, 5, "scheduled", True),
        ("MyApp.C", "imports", 3, ["nightly"], {"src": "cli"}, 5, "scheduled", True),
    ]
    bad = ['{"worker": "ok"}', '{"worker": "W", "priority": -1}', "not json", '{"args": {}}', "[1]",
           '{"worker": "W", "colour": 1}', '{"worker": "W", "scheduled_at": "soon"}']
    result = cli(db_url, "enqueue", "--file", "-", input="\n".join(bad) + "\n")
    assert result.exit_code == 2, result.output
    for number, text in ((2, "priority"), (3, "not valid JSON"), (4, "missing worker"), (5, "JSON object"),
                         (6, "unknown field 'colour'"), (7, "scheduled_at")):
        assert f"line {number}: " in result.output and text in result.output, (number, result.output)
    assert "6 bad line(s), nothing inserted" in result.output and "line 1:" not in result.output
    mixed = cli(db_url, "enqueue", "--file", "-", "--args", '{"a": 1}', input='{"worker": "W"}\n')
    assert mixed.exit_code == 2 and "--args is per job" in mixed.output
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (3,)


def test_jobs_list_says_when_its_limit_cut_the_list(seeded: str) -> None:
    cut = cli(seeded, "jobs", "list", "--limit", "3", "--json")
    assert cut.exit_code == 0 and len(json.loads(cut.stdout)) == 3
    assert "showing the first 3 matching jobs" in cut.stderr
    whole = cli(seeded, "jobs", "list", "--limit", "4")
    assert whole.exit_code == 0 and "showing the first" not in whole.stderr


def test_top_once_shows_the_nodes_running_and_speaks_json(seeded: str) -> None:
    async def frames() -> tuple[Any, Any]:
        async with AsyncObanBridge(seeded, queues={"badges": 2}, node="py-node"):
            text = await asyncio.to_thread(lambda: cli(seeded, "top", "--once", "--interval", "0.5"))
            data = await asyncio.to_thread(lambda: cli(seeded, "top", "--once", "--json"))
            return text, data

    text, data = asyncio.run(frames())
    assert text.exit_code == 0 and "py-node(ObanBridge)" in text.output, text.output
    frame = json.loads(data.stdout)
    badges = next(q for q in frame["queues"] if q["queue"] == "badges")
    assert [n["node"] for n in badges["nodes"]] == ["py-node"] and badges["nodes"][0]["limit"] == 2
    assert badges["completed_per_s"] >= 0 and frame["prefix"] == "public"


def test_demo_asks_before_filling_a_configured_database(empty_db_url: str) -> None:
    import os
    import subprocess
    import sys

    # A process of its own: the demo's worker shares its name with tests/workers.py's.
    def demo(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "oban_bridge", "demo", *args], input=answer, text=True,
                              capture_output=True, timeout=120, env={**os.environ, "DATABASE_URL": empty_db_url})

    refused = demo("--jobs", "50", answer="n\n")
    assert refused.returncode == 1 and "not the embedded PostgreSQL" in refused.stderr, refused.stderr
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_jobs')").fetchone() == (None,)
    ran = demo("--jobs", "200", "--limit", "10", "--yes", "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["enqueued"], summary["completed"]) == (200, 200)
    first = summary["first_attempts"]
    assert first["jobs"] == 200 - summary["retried"] and first["jobs_per_s"] > 0
    # The first attempts' span excludes the flaky jobs' 1 s backoff that the whole run includes.
    assert summary["retried"] == 0 or first["seconds"] < summary["seconds"]


@pytest.mark.parametrize("args", [
    ["enqueue", "MyApp.W"],
    ["enqueue", "--file", "-"],
    ["migrate"],
    ["jobs", "cancel", "1"],
    ["queues", "pause", "default", "--listen", "0"],
    ["start", "-m", "warn_only_workers", "-q", "warnq:1"],
    ["hephaestus", "resume", "wf::1", "done", "--events", "done"],
])
def test_verbs_that_write_warn_before_using_the_embedded_server(args: list[str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml with a database_url above
    (tmp_path / "warn_only_workers.py").write_text(
        "from oban_bridge import worker\n\n@worker('py.WarnOnly', queue='warnq')\ndef warn_only(job):\n    pass\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # Binaries that do not exist: the verb fails right after the warning, before writing anything.
    monkeypatch.setenv("OBAN_BRIDGE_EMBEDDED_BIN", str(tmp_path / "no-postgres"))
    monkeypatch.setenv("OBAN_BRIDGE_EMBEDDED_DIR", str(tmp_path / "pgdata"))
    result = CliRunner().invoke(main, args, input='{"worker": "W"}\n')
    assert "WARNING: no DATABASE_URL" in result.stderr and "not to your application's database" in result.stderr
    assert str(tmp_path / "pgdata") in result.stderr, result.stderr
    read = CliRunner().invoke(main, ["jobs", "list"])
    assert "WARNING" not in read.stderr
