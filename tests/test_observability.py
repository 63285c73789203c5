"""Tracing (OpenTelemetry, in opentelemetry_oban's shape) and Prometheus metrics, checked from
outside: spans from the SDK's in-memory exporter, metrics scraped over HTTP from a running
`oban-bridge start`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from oban_bridge import AsyncObanBridge, Error, Job, ObanBridge, tracing, worker
from oban_bridge.hephaestus.handover import ADVANCE_WORKER

from .test_runtime import count, wait_for

ROOT = Path(__file__).resolve().parent.parent

# What opentelemetry_oban leaves in an Elixir-inserted job's meta: `:otel_propagator_text_map.inject([])`
# merged into the meta map (instrumentation/opentelemetry_oban/lib/opentelemetry_oban.ex,
# add_tracing_information_to_meta/1) — with the default propagators, W3C trace context as
# top-level string keys, `traceparent` and (when the span has one) `tracestate`.
ELIXIR_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ELIXIR_SPAN_ID = "b7ad6b7169203331"
ELIXIR_META = {"traceparent": f"00-{ELIXIR_TRACE_ID}-{ELIXIR_SPAN_ID}-01", "tracestate": "congo=t61rcWkgMzE",
               "batch": "b1"}
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

provider = TracerProvider()
exporter = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(exporter))
app_tracer = provider.get_tracer("app")


@worker("Obs.Ok", queue="obs")
def ok(job: Job) -> None:
    with app_tracer.start_as_current_span("render"):  # the job's own span
        pass


@worker("Obs.AsyncOk", queue="obs")
async def async_ok(job: Job) -> None:
    with app_tracer.start_as_current_span("render async"):
        await asyncio.sleep(0)


@worker("Obs.Fails", queue="obs", max_attempts=1)
def fails(job: Job) -> Any:
    if job.args.get("how") == "error":
        return Error("nope")
    raise ValueError("broken pdf")


seen_baggage: list[Any] = []


@worker("Obs.Baggage", queue="obs")
def reads_baggage(job: Job) -> None:
    from opentelemetry import baggage

    seen_baggage.append(baggage.get_baggage("user"))


@worker("Obs.Isolated", queue="obs", isolation="process")
def isolated_inserts(job: Job) -> None:
    """In its own process (no SDK there): the job it inserts must still carry the attempt's context."""
    with ObanBridge(job.args["url"]) as oban:
        oban.insert(Job.new("Obs.Downstream", {}, queue="downstream"))


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    tracing.setup(tracer_provider=provider)
    yield exporter
    tracing.teardown()


def spans(exp: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exp.get_finished_spans() if s.name == name]


def rows(url: str, where: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT row_to_json(j) FROM oban_jobs j WHERE {where} ORDER BY id")]  # noqa: S608


def test_a_python_insert_carries_its_context_in_meta_as_opentelemetry_oban_does(
        db_url: str, traced: InMemorySpanExporter) -> None:
    with ObanBridge(db_url) as oban:
        with app_tracer.start_as_current_span("request") as request:
            job = oban.insert(Job.new("MyApp.ElixirMailer", {"to": "a@b.c"}, queue="mailers", meta={"k": 1}))
            batch = oban.insert_all([Job.new("MyApp.A", {}), Job.new("MyApp.B", {}, queue="other")])
    # opentelemetry_oban.ex insert/3: "send <queue>", attributes_before_insert/1 and, once the
    # row exists, attributes_after_insert/1 (its test expects `name: "send events"`).
    (send,) = spans(traced, "send mailers")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "oban", "messaging.operation.name": "send", "messaging.client.id": "MyApp.ElixirMailer",
        "messaging.destination.name": "mailers", "messaging.operation.type": "create",
        "oban.job.worker": "MyApp.ElixirMailer", "messaging.message.id": job.id,
        "oban.job.job_id": job.id, "oban.job.priority": 0, "oban.job.max_attempts": 20}
    stored = rows(db_url, f"id = {job.id}")[0]["meta"]
    match = TRACEPARENT.match(stored["traceparent"])
    assert match and stored["k"] == 1
    assert (int(match[1], 16), int(match[2], 16)) == (send.context.trace_id, send.context.span_id)
    (bulk,) = spans(traced, "send")  # insert_all/3: one "send" span with the batch's size
    assert bulk.kind == SpanKind.PRODUCER
    assert dict(bulk.attributes or {}) == {"messaging.system": "oban", "messaging.operation.name": "send",
                                           "messaging.operation.type": "create", "messaging.batch.message_count": 2}
    for inserted in batch:
        parent = TRACEPARENT.match(rows(db_url, f"id = {inserted.id}")[0]["meta"]["traceparent"])
        assert parent and int(parent[2], 16) == bulk.context.span_id


def test_untraced_inserts_leave_meta_alone(db_url: str) -> None:
    with ObanBridge(db_url) as oban:
        job = oban.insert(Job.new("MyApp.X", {}, meta={"k": 1}))
    assert rows(db_url, f"id = {job.id}")[0]["meta"] == {"k": 1}


def insert_like_elixir(url: str, worker_name: str, args: dict[str, Any]) -> int:
    """A row as an Elixir node with opentelemetry_oban writes it (meta carrying its context)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO oban_jobs (worker, queue, args, meta) VALUES (%s, 'obs', %s, %s) RETURNING id",
                           [worker_name, psycopg.types.json.Jsonb(args), psycopg.types.json.Jsonb(ELIXIR_META)]).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("relationship", ["link", "child", "none"])
async def test_an_elixir_inserted_job_joins_the_elixir_trace(db_url: str, relationship: str) -> None:
    exporter.clear()
    tracing.setup(tracer_provider=provider, span_relationship=relationship)
    try:
        ids = [insert_like_elixir(db_url, name, {}) for name in ("Obs.Ok", "Obs.AsyncOk")]
        async with AsyncObanBridge(db_url, queues={"obs": 2}, poll_interval=0.05):
            await wait_for(lambda: count(db_url, "state = 'completed'") == 2)
    finally:
        tracing.teardown()
    processed = spans(exporter, "process obs")
    assert len(processed) == 2
    for span, job_id in zip(sorted(processed, key=lambda s: s.attributes["oban.job.job_id"]), ids, strict=True):
        attributes = dict(span.attributes or {})
        assert span.kind == SpanKind.CONSUMER
        assert {k: attributes[k] for k in ("messaging.system", "messaging.operation.name", "messaging.message.id",
                                           "messaging.destination.name", "messaging.operation.type",
                                           "oban.job.job_id", "oban.job.queue", "oban.job.attempt")} == {
            "messaging.system": "oban", "messaging.operation.name": "process", "messaging.message.id": job_id,
            "messaging.destination.name": "obs", "messaging.operation.type": "process", "oban.job.job_id": job_id,
            "oban.job.queue": "obs", "oban.job.attempt": 1}
        assert attributes["oban.job.duration_us"] >= 0 and attributes["oban.job.queue_time_us"] >= 0
        assert attributes["oban.job.attempted_at"].endswith("Z")
        elixir = int(ELIXIR_TRACE_ID, 16)
        if relationship == "child":
            assert span.context.trace_id == elixir and span.parent.span_id == int(ELIXIR_SPAN_ID, 16)
            assert not span.links
        elif relationship == "link":
            assert span.parent is None and span.context.trace_id != elixir
            (link,) = span.links
            assert (link.context.trace_id, link.context.span_id) == (elixir, int(ELIXIR_SPAN_ID, 16))
        else:
            assert span.parent is None and not span.links
    # The job's own spans are children of its attempt's span (def on a thread, async on the loop).
    for inner_name in ("render", "render async"):
        (inner,) = spans(exporter, inner_name)
        (outer,) = [s for s in processed if s.context.span_id == inner.parent.span_id]
        assert outer.context.trace_id == inner.context.trace_id


async def test_failed_attempts_record_the_error(db_url: str, traced: InMemorySpanExporter) -> None:
    async with AsyncObanBridge(db_url, queues={"obs": 2}, poll_interval=0.05) as oban:
        raised = await oban.insert(fails.new({"how": "raise"}))  # type: ignore[attr-defined]
        errored = await oban.insert(fails.new({"how": "error"}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "state = 'discarded'") == 2)
    by_id = {s.attributes["oban.job.job_id"]: s for s in spans(traced, "process obs")}
    for job_id, kind, message in ((raised.id, "ValueError", "broken pdf"),
                                  (errored.id, "Oban.PerformError", '{:error, "nope"}')):
        span = by_id[job_id]
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == kind
        (event,) = [e for e in span.events if e.name == "exception"]
        assert message in event.attributes["exception.message"]
        assert sorted(event.attributes) == ["exception.escaped", "exception.message", "exception.stacktrace",
                                            "exception.type"] if kind == "ValueError" else \
            sorted(event.attributes) == ["exception.message", "exception.stacktrace", "exception.type"]
    # As Span.record_exception/3 writes Oban's own exception (opentelemetry_oban_test.exs expects
    # "Elixir.Oban.CrashError" and the three keys): the module's full name, no "** (…)" banner.
    (event,) = [e for e in by_id[errored.id].events if e.name == "exception"]
    assert event.attributes["exception.type"] == "Elixir.Oban.PerformError"
    assert event.attributes["exception.message"] == 'Obs.Fails failed with {:error, "nope"}'


async def test_perform_job_and_drains_make_attempt_spans(db_url: str, traced: InMemorySpanExporter) -> None:
    """Oban.Testing's perform_job and drains run Executor.call/1, whose telemetry events
    opentelemetry_oban makes spans of: a worker tested here is traced as on a node."""
    from oban_bridge.testing import AsyncTesting, Testing, perform_job, perform_job_async

    perform_job(ok, {})
    await perform_job_async(async_ok, {})
    with pytest.raises(ValueError, match="broken pdf"):
        perform_job(fails, {"how": "raise"})
    built = spans(traced, "process obs")
    assert len(built) == 3 and all(isinstance(s.attributes["messaging.message.id"], int) for s in built)
    assert [s.status.status_code for s in built] == [StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR]
    for inner_name, outer in (("render", built[0]), ("render async", built[1])):
        (inner,) = spans(traced, inner_name)
        assert inner.parent is not None and inner.parent.span_id == outer.context.span_id

    traced.clear()
    tracing.setup(tracer_provider=provider, span_relationship="child")
    ids = [insert_like_elixir(db_url, name, {}) for name in ("Obs.Ok", "Obs.AsyncOk")]
    with ObanBridge(db_url, testing="manual") as oban:
        assert Testing(oban).drain_queue("obs") == {"cancelled": 0, "discard": 0, "failure": 0, "snoozed": 0,
                                                     "success": 2}
    ids.append(insert_like_elixir(db_url, "Obs.Ok", {}))
    async with AsyncObanBridge(db_url, testing="manual") as aoban:
        assert (await AsyncTesting(aoban).drain_queue("obs"))["success"] == 1
    drained = spans(traced, "process obs")
    assert sorted(s.attributes["messaging.message.id"] for s in drained) == ids
    assert all(s.context.trace_id == int(ELIXIR_TRACE_ID, 16) for s in drained)  # the Elixir request's trace
    assert len(spans(traced, "render")) == 2 and len(spans(traced, "render async")) == 1


def test_a_failed_insert_records_its_error_type(db_url: str, traced: InMemorySpanExporter) -> None:
    oban = ObanBridge(db_url, prefix="no_such_schema")  # not entered: the insert meets the missing table
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the insert raises
            oban.insert(Job.new("MyApp.X", {}, queue="q"))
    finally:
        oban.close()
    (send,) = spans(traced, "send q")
    assert send.status.status_code == StatusCode.ERROR
    assert send.attributes["error.type"]
    assert [e.name for e in send.events] == ["exception"]


async def test_a_child_attempt_runs_in_the_producers_whole_context_baggage_included(db_url: str) -> None:
    """job_handler.ex extract_and_attach/1 attaches the extracted context as it is (`"child"`)."""
    exporter.clear()
    seen_baggage.clear()
    tracing.setup(tracer_provider=provider, span_relationship="child")
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO oban_jobs (worker, queue, args, meta) VALUES ('Obs.Baggage', 'obs', '{}', %s)",
                         [psycopg.types.json.Jsonb({**ELIXIR_META, "baggage": "user=alice"})])
        async with AsyncObanBridge(db_url, queues={"obs": 1}, poll_interval=0.05):
            await wait_for(lambda: count(db_url, "state = 'completed'") == 1)
    finally:
        tracing.teardown()
    assert seen_baggage == ["alice"]


async def test_an_isolated_jobs_inserts_carry_its_attempts_context(db_url: str, traced: InMemorySpanExporter) -> None:
    async with AsyncObanBridge(db_url, queues={"obs": 1}, poll_interval=0.05) as oban:
        await oban.insert(isolated_inserts.new({"url": db_url}))  # type: ignore[attr-defined]
        await wait_for(lambda: count(db_url, "worker = 'Obs.Downstream'") == 1, timeout=60)
        await wait_for(lambda: count(db_url, "state = 'completed'") == 1)
    (attempt,) = spans(traced, "process obs")
    (downstream,) = rows(db_url, "worker = 'Obs.Downstream'")
    match = TRACEPARENT.match(downstream["meta"].get("traceparent", ""))
    assert match, downstream["meta"]
    assert (int(match[1], 16), int(match[2], 16)) == (attempt.context.trace_id, attempt.context.span_id)


def test_a_hand_over_carries_the_steps_context_to_the_advance_worker(traced: InMemorySpanExporter) -> None:
    with app_tracer.start_as_current_span("step") as step:
        job = tracing.carry(Job.new(ADVANCE_WORKER, {}, meta={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}))
    match = TRACEPARENT.match(job.meta["traceparent"])
    assert match and int(match[2], 16) == step.get_span_context().span_id  # the step's, not the copied one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_endpoint_of_a_running_node(db_url: str) -> None:
    with ObanBridge(db_url) as client:
        client.insert_all([Job.new("Harness.Echo", {"outcome": o}, queue="elixir", max_attempts=1)
                           for o in ("ok", "ok", "ok", "error", "cancel")])
        client.insert(Job.new("Harness.Echo", {}, queue="elixir", schedule_in=3600))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    node = subprocess.Popen([sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "elixir:7",
                             "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        values: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                values = scrape(port)
            except OSError:
                values = {}
            if values.get('oban_bridge_jobs{queue="elixir",state="completed"}') == 3:
                break
            time.sleep(0.2)
        finished = 'oban_bridge_jobs_finished_total{queue="elixir",state="%s",worker="Harness.Echo"}'
        assert values[finished % "completed"] == 3
        assert values[finished % "discarded"] == 1  # {:error, _} on its last attempt
        assert values[finished % "cancelled"] == 1
        assert values['oban_bridge_job_duration_seconds_count{queue="elixir",worker="Harness.Echo"}'] == 5
        assert values['oban_bridge_job_queue_time_seconds_count{queue="elixir",worker="Harness.Echo"}'] == 5
        assert values['oban_bridge_jobs_running{queue="elixir"}'] == 0
        assert values['oban_bridge_queue_limit{queue="elixir"}'] == 7
        # The leader's counts for Oban Web, not a query of the exporter's own:
        assert values['oban_bridge_jobs{queue="elixir",state="scheduled"}'] == 1
        assert values['oban_bridge_jobs{queue="elixir",state="discarded"}'] == 1
        assert values['oban_bridge_jobs{queue="elixir",state="available"}'] == 0
    finally:
        node.send_signal(signal.SIGTERM)
        code = node.wait(60)
    assert code == 0, node.stderr.read() if node.stderr else ""


def test_cli_refuses_a_port_it_cannot_serve_on(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "elixir:1",
                               "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr



async def test_nodes_of_one_process_running_one_queue_make_one_series(db_url: str) -> None:
    """The exposition format allows one sample per label set: two nodes' `obs` queue add up."""
    from prometheus_client import CollectorRegistry, generate_latest

    from oban_bridge import metrics

    registry = CollectorRegistry()
    metrics.enable(registry)
    try:
        async with AsyncObanBridge(db_url, queues={"obs": 3}), AsyncObanBridge(db_url, queues={"obs": 4}):
            body = generate_latest(registry).decode()
    finally:
        metrics.disable()
    assert [line for line in body.splitlines() if line.startswith("oban_bridge_queue_limit")] == [
        'oban_bridge_queue_limit{queue="obs"} 7.0']
    assert [line for line in body.splitlines() if line.startswith("oban_bridge_jobs_running")] == [
        'oban_bridge_jobs_running{queue="obs"} 0.0']


@pytest.mark.parametrize("case", ["taken", "past 65535"])
def test_processes_refuse_metrics_ports_they_cannot_serve_on_at_once(db_url: str, case: str) -> None:
    """With --processes 2, node i serves on port + i: a port that cannot work is one line and exit 2,
    not a child restarted with backoff for ever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1 if case == "taken" else 65535  # the second node's port is taken
        env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "oban_bridge", "start", "-m", "tests.workers", "-q", "elixir:1",
                               "--processes", "2", "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    expected = f"cannot serve metrics on 127.0.0.1:{port + 1}" if case == "taken" else "past 65535"
    assert expected in done.stderr


def test_without_an_sdk_nothing_is_made_or_injected(db_url: str) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # the suite sets no global SDK
    tracing.setup()
    try:
        with ObanBridge(db_url) as oban:
            job = oban.insert(Job.new("MyApp.X", {}, meta={"k": 1}))
        assert tracing.start_job_span(job) is None
    finally:
        tracing.teardown()
    assert rows(db_url, f"id = {job.id}")[0]["meta"] == {"k": 1}
