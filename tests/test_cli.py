"""`oban-bridge migrate | verify | enqueue`, through click's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from oban_bridge.cli import main


def run(url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


def test_migrate_verify_enqueue(empty_db_url: str) -> None:
    result = run(empty_db_url, "migrate")
    assert result.exit_code == 0 and "from version 0 to 14" in result.output
    assert "already at version 14" in run(empty_db_url, "migrate").output
    result = run(empty_db_url, "verify")
    assert result.exit_code == 0 and "identical to Elixir Oban 2.23.1" in result.output

    result = run(empty_db_url, "enqueue", "MyApp.Workers.Mailer", "--args", '{"to": "a@b.c"}',
                 "--queue", "mailers", "--priority", "2", "--tag", "Mail", "--tag", " mail ",
                 "--meta", '{"team": "x"}', "--max-attempts", "3", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["id"] == 1 and job["conflict"] is False
    assert (job["worker"], job["queue"], job["priority"], job["tags"], job["max_attempts"], job["meta"]) == (
        "MyApp.Workers.Mailer", "mailers", 2, ["mail"], 3, {"team": "x"})

    args = ["enqueue", "MyApp.Sync", "--args", '{"account": 1, "n": 1}', "--unique-period", "infinity",
            "--unique-keys", "account", "--json"]
    first = json.loads(run(empty_db_url, *args).output)
    args[3] = '{"account": 1, "n": 2}'
    second = json.loads(run(empty_db_url, *args).output)
    assert (second["id"], second["conflict"]) == (first["id"], True)

    result = run(empty_db_url, "enqueue", "W", "--schedule-in", "60")
    assert result.exit_code == 0 and "(scheduled)" in result.output


def test_verify_json_and_exit_code_on_difference(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX oban_jobs_args_index")
    result = run(db_url, "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["version"] == 14 and not report["ok"]
    assert any("oban_jobs_args_index" in d for d in report["differences"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "W", "--args", "{nope"], "invalid args: not valid JSON"),
        (["enqueue", "W", "--args", "[1, 2]"], "invalid args: expected a JSON object"),
        (["enqueue", "W", "--priority", "-1"], "invalid priority"),
        (["enqueue", "W", "--max-attempts", "0"], "invalid max_attempts"),
        (["enqueue", ""], "invalid worker"),
        (["enqueue", "W", "--queue", ""], "invalid queue"),
        (["enqueue", "W", "--meta", '"text"'], "invalid meta"),
        (["enqueue", "W", "--unique-period", "soon"], "invalid unique.period"),
        (["enqueue", "W", "--unique-period", "0"], "invalid unique.period"),
        (["migrate", "--version", "15"], "Invalid value for '--version'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(db_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (0,)


def test_missing_tables_says_to_migrate(empty_db_url: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", empty_db_url, "enqueue", "W"])
    assert result.exit_code == 1
    assert "oban-bridge migrate" in result.output and "Traceback" not in result.output


def test_unreachable_database_masks_the_password() -> None:
    url = "postgresql://app:s3cr3t-pw@127.0.0.1:1/app"
    result = CliRunner().invoke(main, ["--database-url", url, "verify"])
    assert result.exit_code == 1
    assert "s3cr3t-pw" not in result.output and "app:***@" in result.output
    assert "Traceback" not in result.output


def test_console_script_as_subprocess(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "oban_bridge", "enqueue", "badge_forge.generator.GenerateBadge",
           "--args", '{"id": "7bfb7c39", "name": "Alasdair"}', "--queue", "badges", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["queue"] == "badges"
    bad = subprocess.run([*cmd[:3], "enqueue", "W", "--args", "[]"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "invalid args" in bad.stderr
    debug = subprocess.run([*cmd[:3], "--debug", "enqueue", "W", "--args", "[]"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    after_verb = subprocess.run([*cmd[:3], "enqueue", "W", "--args", "[]", "--debug"], env=env, capture_output=True,
                                text=True, timeout=60)
    assert after_verb.returncode != 0 and "Traceback" in after_verb.stderr  # as --database-url, on the verb too


def test_start_runs_workers_and_obeys_a_pause_signal(db_url: str) -> None:
    import signal
    import time

    from oban_bridge import Job, ObanBridge
    from oban_bridge.notifier import channel, encode

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": root}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oban_bridge", "start", "--module", "tests.workers", "--queues", "badges:2",
         "--node", "cli-node", "--grace", "1"],
        env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def state(job_id: int | None) -> str:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job_id]).fetchone()
            assert row is not None
            return str(row[0])

    def wait(job_id: int | None, expected: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while state(job_id) != expected:
            assert time.monotonic() < deadline, f"job {job_id} is {state(job_id)}, not {expected}"
            time.sleep(0.05)

    try:
        with ObanBridge(db_url) as client:
            first = client.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue="badges"))
            wait(first.id, "completed")
            with client.connection() as conn:
                conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"),
                                                         encode({"action": "pause", "ident": "any", "queue": "badges"})])
            time.sleep(0.5)
            second = client.insert(Job.new("badge_forge.generator.GenerateBadge", {}, queue="badges"))
            time.sleep(1.5)
            assert state(second.id) == "available"
            with client.connection() as conn:
                conn.execute("SELECT pg_notify(%s, %s)", [channel("public", "signal"),
                                                         encode({"action": "resume", "ident": "any", "queue": "badges"})])
            wait(second.id, "completed")
        with psycopg.connect(db_url) as conn:
            by = conn.execute("SELECT attempted_by[1] FROM oban_jobs WHERE id = %s", [second.id]).fetchone()
        assert by == ("cli-node",)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--module", "no_such_module_here", "--queues", "a:1"], "cannot import"),
     (["--module", "tests.workers", "--queues", "a:zero"], "invalid queues"),
     (["--module", "tests.workers", "--queues", "a:1", "--cron", "61 * * * *|W"], "out of range"),
     (["--module", "tests.workers", "--queues", "a:1", "--cron", "* * * * *"], "expected 'EXPR|WORKER'"),
     (["--module", "tests.workers", "--queues", "a:1", "--cron", "@daily|W|[1]"], "JSON object"),
     (["--module", "tests.workers", "--queues", "a:1", "--cron", "@daily|W", "--timezone", "Mars/Base"],
      "unknown time zone"),
     (["--module", "tests.workers", "--queues", "a:1", "--prune-after", "soon"], "invalid prune-after"),
     (["--module", "tests.workers", "--queues", "a:1", "--prune-after", "0s"], "more than zero"),
     (["--module", "tests.workers", "--queues", "a:1", "--rescue-after", "-5m"], "invalid rescue-after"),
     (["--module", "tests.workers", "--queues", "a:1", "--orphan-grace", "off"], "invalid orphan-grace"),
     (["--module", "tests.workers", "--queues", "a:1", "--prune-limit", "lots"], "invalid prune-limit"),
     (["--module", "tests.workers", "--queues", "a:1", "--plugin-scope", "mine"], "'mine' is not one of")],
)
def test_start_rejects_bad_input(db_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, "start", *args])
    assert result.exit_code == 2 and message in result.output


def test_connection_options_work_after_the_verb_too(db_url: str) -> None:
    runner = CliRunner()
    migrated = runner.invoke(main, ["migrate", "--database-url", db_url, "--prefix", "private"])
    assert migrated.exit_code == 0, migrated.output
    verified = runner.invoke(main, ["--database-url", db_url, "verify", "--prefix", "private"])
    assert verified.exit_code == 0, verified.output
    listed = runner.invoke(main, ["jobs", "list", "--database-url", db_url, "--prefix", "private"])
    assert listed.exit_code == 0, listed.output
    counts = runner.invoke(main, ["queues", "--database-url", db_url, "--listen", "0", "--json"])
    assert counts.exit_code == 0, counts.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--prefix", "", "jobs", "list"], 2, "invalid prefix"),
    (["--prefix", "p" * 64, "jobs", "list"], 2, "invalid prefix"),
    (["jobs", "list", "--prefix", ""], 2, "invalid prefix"),
    (["--database-url", "notaurl", "jobs", "list"], 2, "not a PostgreSQL URL"),
    (["enqueue", "--file", "/nonexistent/jobs.jsonl"], 2, "does not exist"),
    (["start", "-m", "tests.workers", "-q", ""], 2, "no queues given"),
    (["start", "-m", "tests.workers", "-q", "a:5,a:3"], 2, "given twice"),
    (["start", "-m", "tests.workers", "-q", "a:1", "--grace", "-1"], 2, "--grace"),
    (["queues", "--listen", "-1"], 2, "--listen"),
    (["--database-url", "", "jobs", "list"], 2, "empty; leave it out"),
    (["jobs", "list", "--database-url", " "], 2, "empty; leave it out"),
    (["enqueue", "W", "--schedule-in", "99999999999999"], 2, "outside the years 1 to 9999"),
    (["enqueue", "W", "--schedule-in", "-1e12"], 2, "outside the years 1 to 9999"),
    (["enqueue", "W", "--max-attempts", "99999999999"], 2, "2147483647"),
    (["enqueue", "W", "--tag", "ok", "--args", '{"n": 1}', "--meta", "[1]"], 2, "expected a JSON object"),
    (["jobs", "cancel", "99999999999999999999999"], 2, "not in the range"),
    (["start", "-m", "tests.workers", "-q", "a:1", "--grace", "nan"], 2, "nan is not a number of seconds"),
    (["start", "-m", "tests.workers", "-q", "a:1", "--grace", "inf"], 2, "--grace"),
    (["start", "-m", "tests.workers", "-q", "a:99999999999999999999"], 2, "at most 2,147,483,647"),
    (["start", "-m", "tests.workers", "-q", "a:local=1,global=3000000000"], 2, "at most 2,147,483,647"),
    (["start", "-m", "tests.workers", "-q", "a:1", "--processes", "99999999999"], 2, "at most 256"),
    (["start", "-m", "", "-q", "a:1"], 2, "expected a module name"),
    (["start", "-m", "tests.workers", "-q", "a:1", "--metrics-port", "0"], 2, "--metrics-port"),
])
def test_bad_input_is_one_line_and_exit_2(db_url: str, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args] if args[0] != "--database-url" else args)
    assert result.exit_code == code and message in result.output, result.output
    assert "Traceback" not in result.output and "running" not in result.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--prefix", "nosuch", "jobs", "list"], 1, "oban-bridge migrate --prefix nosuch"),
    (["jobs", "show", "--prefix", "nosuch", "1"], 1, "no Oban tables"),
    (["queues", "--prefix", "nosuch", "--listen", "0"], 1, "no Oban tables"),
    (["jobs", "show", "99999999999999999999999"], 2, "'JOB_ID': 99999999999999999999999 is not in the range"),
])
def test_database_errors_are_one_line(db_url: str, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    assert result.exit_code == code and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_bad_line_of_a_file_is_reported_by_number(db_url: str, tmp_path: Any) -> None:
    source = tmp_path / "jobs.jsonl"
    source.write_text('{"worker": "W", "args": {}}\n{"worker": "W", "max_attempts": 99999999999}\n'
                      '{"worker": "W", "schedule_in": -1e300}\n')
    result = CliRunner().invoke(main, ["--database-url", db_url, "enqueue", "--file", str(source)])
    assert result.exit_code == 2 and "2 bad line(s), nothing inserted" in result.output, result.output
    assert "line 2: max_attempts" in result.output and "line 3: schedule_in" in result.output


def test_an_empty_database_url_in_the_environment_is_refused_not_the_embedded_server(db_url: str) -> None:
    empty = CliRunner().invoke(main, ["jobs", "list"], env={"DATABASE_URL": ""})
    assert empty.exit_code == 2 and "Invalid value for DATABASE_URL: empty" in empty.output, empty.output
    given = CliRunner().invoke(main, ["jobs", "list", "--database-url", db_url], env={"DATABASE_URL": ""})
    assert given.exit_code == 0, given.output  # the verb's own option replaces it


def test_a_pyproject_that_is_not_utf8_is_named(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.oban_bridge]\nprefix = "\xff"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["jobs", "list"])
    assert result.exit_code == 2 and f"cannot read {tmp_path / 'pyproject.toml'}" in result.output, result.output


def test_a_module_calling_dictconfig_does_not_silence_oban_bridge(db_url: str, tmp_path: Any) -> None:
    """logging.config.dictConfig() disables the loggers that exist when it runs (its default): a
    worker module calling it at import must not leave job failures unlogged."""
    log_file = tmp_path / "app.log"
    (tmp_path / "dict_boom.py").write_text(
        "import logging.config\nfrom oban_bridge import worker\n\n"
        "logging.config.dictConfig({'version': 1, 'handlers': {'f': {'class': 'logging.FileHandler', "
        f"'filename': {str(log_file)!r}, 'formatter': 'p'}}}}, 'formatters': {{'p': {{'format': 'APP %(message)s'}}}}, "
        "'root': {'handlers': ['f'], 'level': 'INFO'}})\n\n"
        "@worker('py.LogBoom', queue='logq', max_attempts=3)\n"
        "def boom(job):\n    raise RuntimeError('the log must say this')\n")
    _run_start_until(db_url, {"PYTHONPATH": str(tmp_path)}, ["-m", "dict_boom"], "retryable")
    assert "APP job py.LogBoom failure" in log_file.read_text()


def test_handlers_on_the_oban_bridge_logger_alone_are_the_apps(db_url: str, tmp_path: Any) -> None:
    log_file = tmp_path / "app.log"
    (tmp_path / "own_boom.py").write_text(
        "import logging\nfrom oban_bridge import worker\n\n"
        f"handler = logging.FileHandler({str(log_file)!r})\n"
        "handler.setFormatter(logging.Formatter('APP %(message)s'))\n"
        "logging.getLogger('oban_bridge').addHandler(handler)\n\n"
        "@worker('py.LogBoom', queue='logq', max_attempts=3)\n"
        "def boom(job):\n    raise RuntimeError('the log must say this')\n")
    err = _run_start_until(db_url, {"PYTHONPATH": str(tmp_path)}, ["-m", "own_boom"], "retryable")
    assert "APP job py.LogBoom failure" in log_file.read_text()
    assert "py.LogBoom failure" not in err, err  # not a second time on stderr by our root handler


def test_pyproject_is_found_upward_and_checked(db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.oban_bridge]\ndatabase_url = {json.dumps(db_url)}\n")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    verified = CliRunner().invoke(main, ["verify"])
    assert verified.exit_code == 0 and "14" in verified.output, verified.output
    (tmp_path / "pyproject.toml").write_text("[tool.oban_bridge]\ndatabase_url = 5\n")
    bad = CliRunner().invoke(main, ["verify"])
    assert bad.exit_code == 2 and "database_url must be a string" in bad.output
    for text, message in (('database_url = ""', f"[tool.oban_bridge] database_url in {tmp_path / 'pyproject.toml'}: "
                                                "empty; leave it out"),
                          ('database_url = "zz zz"', "[tool.oban_bridge] database_url in"),
                          ("queues = 5", "queues must be a string"),
                          ('queues = ["a:1"]', "queues must be a string")):
        (tmp_path / "pyproject.toml").write_text(f"[tool.oban_bridge]\n{text}\n")
        bad = CliRunner().invoke(main, ["start", "-m", "tests.workers"] if "queues" in text else ["verify"])
        assert bad.exit_code == 2 and message in bad.output and "--database-url" not in bad.output, bad.output
    # A verb's own --database-url replaces a bad one from pyproject.toml or the environment.
    (tmp_path / "pyproject.toml").write_text('[tool.oban_bridge]\ndatabase_url = "zz zz"\n')
    good = CliRunner().invoke(main, ["verify", "--database-url", db_url])
    assert good.exit_code == 0, good.output
    (tmp_path / "pyproject.toml").write_text("[tool.oban_bridge]\n")
    good = CliRunner().invoke(main, ["verify", "--database-url", db_url], env={"DATABASE_URL": "notaurl"})
    assert good.exit_code == 0, good.output
    bad = CliRunner().invoke(main, ["verify"], env={"DATABASE_URL": "notaurl"})
    assert bad.exit_code == 2 and "Invalid value for DATABASE_URL" in bad.output, bad.output


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_stops_at_once(db_url: str) -> None:
    """`start --grace 60` with a 30 s job running: the first SIGINT says it waits, the second ends
    the grace at once; the job is left executing for the lifeline, not lost."""
    import os
    import signal as sig
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psycopg

    from oban_bridge import Job, ObanBridge

    root = Path(__file__).resolve().parent.parent
    with ObanBridge(db_url) as client:
        job = client.insert(Job.new("py.LongSleep", {"seconds": 30}, queue="slow"))
    proc = subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "slow:1",
                             "--grace", "60"], cwd=root, env={**os.environ, "DATABASE_URL": db_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def state() -> str:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job.id]).fetchone()
        return str(row[0]) if row else "?"

    try:
        deadline = time.monotonic() + 30
        while state() != "executing":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(sig.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for the job
        proc.send_signal(sig.SIGINT)
        started = time.monotonic()
        code = proc.wait(20)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0 and took < 10, err
    assert "stopping: waiting up to 60 s for 1 running job(s) (Ctrl-C again to stop now)" in err
    assert "stopping now" in err and "Traceback" not in err
    assert state() == "executing"


def _run_start_until(db_url: str, extra_env: dict[str, str], args: list[str], job_state: str) -> str:
    import os
    import signal as sig
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psycopg

    from oban_bridge import Job, ObanBridge

    root = Path(__file__).resolve().parent.parent
    with ObanBridge(db_url) as client:
        job = client.insert(Job.new("py.LogBoom", {}, queue="logq"))
    proc = subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-q", "logq:1", *args], cwd=root,
                            env={**os.environ, "DATABASE_URL": db_url, **extra_env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT state::text FROM oban_jobs WHERE id = %s", [job.id]).fetchone()
            if row and row[0] == job_state:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(sig.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.stderr.read() if proc.stderr else ""


def test_start_keeps_the_handlers_a_worker_module_configured(db_url: str, tmp_path: Any) -> None:
    target = tmp_path / "log.jsonl"
    err = _run_start_until(db_url, {"LOG_WORKERS_FILE": str(target)}, ["-m", "tests.log_workers"], "retryable")
    records = [json.loads(line) for line in target.read_text().splitlines()]
    [failure] = [r for r in records if r["worker"] == "py.LogBoom"]
    assert failure["level"] == "WARNING" and isinstance(failure["job_id"], int)
    assert "the log must say this" in failure["error"]
    assert "py.LogBoom failure" not in err, err  # written once, by their handler: not a second time by ours


def test_start_lets_a_worker_module_call_basicconfig(db_url: str, tmp_path: Any) -> None:
    """The most common setup of all: `logging.basicConfig(...)` at import. It does nothing when the
    root logger already has a handler, so the CLI must not have installed one by then."""
    log_file = tmp_path / "app.log"
    (tmp_path / "basic_boom.py").write_text(
        "import logging\nfrom oban_bridge import worker\n\n"
        f"logging.basicConfig(filename={str(log_file)!r}, level=logging.INFO, format='APP %(levelname)s %(message)s')\n\n"
        "@worker('py.LogBoom', queue='logq', max_attempts=3)\n"
        "def boom(job):\n    raise RuntimeError('the log must say this')\n")
    err = _run_start_until(db_url, {"PYTHONPATH": str(tmp_path)}, ["-m", "basic_boom"], "retryable")
    written = log_file.read_text()
    assert "APP WARNING job py.LogBoom failure" in written, written
    # Which job and why, in the message itself: the app's format shows nothing else.
    assert re.search(r"failure \(id \d+, attempt 1\): \*\* \(RuntimeError\) the log must say this\n", written), written
    assert "py.LogBoom failure" not in err, err


def test_text_failure_lines_end_without_a_blank_line(db_url: str, tmp_path: Any) -> None:
    (tmp_path / "plain_boom.py").write_text(
        "from oban_bridge import worker\n\n@worker('py.LogBoom', queue='logq', max_attempts=3)\n"
        "def boom(job):\n    raise RuntimeError('the log must say this')\n")
    err = _run_start_until(db_url, {"PYTHONPATH": str(tmp_path)}, ["-m", "plain_boom"], "retryable")
    assert "the log must say this" in err and "\n\n" not in err, err


def test_start_log_format_json_carries_the_fields(db_url: str, tmp_path: Any) -> None:
    import importlib.util

    # A module without its own logging setup: the CLI installs its JSON handler.
    mod = tmp_path / "plain_boom.py"
    mod.write_text("from oban_bridge import worker\n\n@worker('py.LogBoom', queue='logq', max_attempts=3)\n"
                   "def boom(job):\n    raise RuntimeError('the log must say this')\n")
    assert importlib.util.find_spec("json")
    err = _run_start_until(db_url, {"PYTHONPATH": str(tmp_path), "OBAN_BRIDGE_LOG_FORMAT": "json"},
                           ["-m", "plain_boom"], "retryable")
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [failure] = [r for r in lines if r.get("worker") == "py.LogBoom"]
    assert failure["level"] == "WARNING" and failure["queue"] == "logq" and failure["attempt"] == 1
    assert "the log must say this" in failure["error"] and failure["time"].endswith("Z")
    bad = CliRunner().invoke(main, ["--database-url", db_url, "start", "-m", "tests.workers", "-q", "a:1",
                                    "--log-level", "LOUD"])
    assert bad.exit_code == 2 and "log level must be one of" in bad.output


def test_log_jobs_writes_a_line_per_job_and_nothing_without_it(db_url: str, tmp_path: Any) -> None:
    (tmp_path / "plain_ok.py").write_text("from oban_bridge import worker\n\n"
                                          "@worker('py.LogBoom', queue='logq')\ndef ok(job):\n    return None\n")
    env = {"PYTHONPATH": str(tmp_path), "OBAN_BRIDGE_LOG_FORMAT": "json"}
    quiet = _run_start_until(db_url, env, ["-m", "plain_ok"], "completed")
    assert not [line for line in quiet.splitlines() if '"event":"success"' in line], quiet
    loud = _run_start_until(db_url, env, ["-m", "plain_ok", "--log-jobs"], "completed")
    [line] = [json.loads(x) for x in loud.splitlines() if '"event":"success"' in x]
    assert (line["worker"], line["queue"], line["attempt"], line["state"]) == ("py.LogBoom", "logq", 1, "completed")
    assert line["level"] == "INFO"  # as attach_default_logger's lines, so --log-level filters them
    above = _run_start_until(db_url, env, ["-m", "plain_ok", "--log-jobs", "--log-level", "ERROR"], "completed")
    assert '"event":"success"' not in above, above
    assert isinstance(line["job_id"], int) and line["duration"] >= 0
    by_env = _run_start_until(db_url, {**env, "OBAN_BRIDGE_LOG_JOBS": "1"}, ["-m", "plain_ok"], "completed")
    assert '"event":"success"' in by_env
    bad = CliRunner().invoke(main, ["--database-url", db_url, "start", "-m", "tests.workers", "-q", "a:1"],
                             env={"OBAN_BRIDGE_LOG_JOBS": "maybe"})
    assert bad.exit_code == 2 and "invalid OBAN_BRIDGE_LOG_JOBS: must be 1 or 0" in bad.output


def test_buffered_log_lines_reach_the_descriptor_warnings_at_once_the_rest_within_the_flush() -> None:
    """Per-job lines are buffered (no write(2) per line), so they must still arrive: a WARNING as it
    is logged, an INFO line within the flusher's interval, a traceback whole."""
    import logging
    import select

    from oban_bridge.logs import BufferedStreamHandler, JsonFormatter

    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    handler = BufferedStreamHandler(writer, interval=0.1)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("oban_bridge.test_buffered")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)

    def lines(timeout: float) -> list[dict[str, Any]]:
        got = b""
        while select.select([read_fd], [], [], timeout)[0]:
            got += os.read(read_fd, 65536)
            timeout = 0.05
        return [json.loads(line) for line in got.decode().splitlines()]

    try:
        log.info("routine %s", "line", extra={"job_id": 1})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed", extra={"job_id": 2})
        first = lines(0)  # the ERROR flushed at once, carrying the INFO line before it
        assert [(r["message"], r["job_id"]) for r in first] == [("routine line", 1), ("failed", 2)]
        assert "RuntimeError: boom" in first[1]["traceback"]
        log.info("later", extra={"job_id": 3})
        assert [r["job_id"] for r in lines(2.0)] == [3]  # no flush asked: the flusher wrote it
    finally:
        log.removeHandler(handler)
        handler.close()
        writer.close()
        os.close(read_fd)


def test_json_log_lines_survive_odd_fields_and_keep_their_own_keys() -> None:
    import logging

    from oban_bridge.logs import JsonFormatter, TextFormatter

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            raise RuntimeError("no")

    record = logging.LogRecord("app", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    record.__dict__.update(time="mine", level=1, nan=float("nan"), inf=float("inf"), obj=Unprintable(),
                           big=2**70, pair={(1, 2): 3})
    line = json.loads(JsonFormatter().format(record))  # valid JSON: no NaN/Infinity tokens
    assert (line["level"], line["extra_time"], line["extra_level"], line["message"]) == ("WARNING", "mine", 1, "hello w")
    assert line["time"].endswith("Z") and line["big"] == 2**70 and line["obj"] == "<unprintable Unprintable>"
    assert line["inf"] == "inf" and line["nan"] == "nan" and line["pair"] == {"(1, 2)": 3}
    assert "obj=<unprintable Unprintable>" in TextFormatter().format(record)
    mismatched = logging.LogRecord("app", logging.WARNING, __file__, 1, "%s and %s", ("one",), None)
    assert "did not fit the format" in json.loads(JsonFormatter().format(mismatched))["message"]
