"""OpenTelemetry traces for inserts and job attempts, in opentelemetry_oban's shape
(opentelemetry-erlang-contrib, instrumentation/opentelemetry_oban: lib/opentelemetry_oban.ex for
inserts, lib/opentelemetry_oban/job_handler.ex for attempts), so one trace crosses languages.

- An insert is a `PRODUCER` span named `"send <queue>"` (`insert_all`: `"send"`). The
  trace context is injected into the job's `meta` with the global text-map propagator, as
  top-level keys (W3C: `traceparent`, `tracestate`), exactly where opentelemetry_oban puts it.
  So an Elixir worker traced by opentelemetry_oban continues a Python insert's trace, and the
  reverse.
- An attempt is a `CONSUMER` span named `"process <queue>"` with the messaging attributes and
  opentelemetry_oban's `oban.job.*` ones. The context in `meta` is, as `span_relationship` says,
  a link (opentelemetry_oban's default), the parent (`"child"`), or ignored (`"none"`). A failed
  attempt records its exception and an ERROR status. While the job runs, its span is the current
  one, so spans the job's own code makes are its children, and jobs it inserts (a Hephaestus
  step's AdvanceWorker included) carry its context on.

Off until `setup()` (the CLI: `oban-bridge start --otel`), as opentelemetry_oban is until
`OpentelemetryOban.setup/1`. It needs only `opentelemetry-api` (`pip install 'oban_bridge[otel]'`);
where spans go — exporters, sampling — is the app's OpenTelemetry SDK set-up, as usual.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ObanBridgeError, ValidationError
from .job import Job

if TYPE_CHECKING:
    from .executor import Outcome

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # tracing stays off; setup() says what to install
    trace = None  # type: ignore[assignment]

RELATIONSHIPS = ("link", "child", "none")
_EMPTY: Any = otel_context.Context() if trace is not None else None
_NO_OP_PROVIDERS: Any = (trace.ProxyTracerProvider, trace.NoOpTracerProvider) if trace is not None else ()


@dataclass(frozen=True, slots=True)
class _Config:
    tracer: Any
    relationship: str
    jobs: bool
    inserts: bool
    global_provider: bool  # the tracer comes from the global provider, which may be a no-op one


def _no_sdk(config: _Config) -> bool:
    """No SDK is set up (the API's proxy or no-op provider): spans would be no-ops, so none are
    started at all. Checked on each call: an app may set its SDK up after `setup()`."""
    return config.global_provider and isinstance(trace.get_tracer_provider(), _NO_OP_PROVIDERS)


_config: _Config | None = None


def available() -> bool:
    """Whether the OpenTelemetry API is installed."""
    return trace is not None


def setup(*, span_relationship: str = "link", jobs: bool = True, inserts: bool = True,
          tracer_provider: Any = None) -> None:
    """Trace job attempts and inserts from now on, in this process (OpentelemetryOban.setup/1)."""
    global _config
    if trace is None:
        raise ObanBridgeError("tracing needs the OpenTelemetry API: pip install 'oban_bridge[otel]'")
    if span_relationship not in RELATIONSHIPS:
        raise ValidationError("span_relationship", f"expected one of {', '.join(RELATIONSHIPS)}, "
                                                   f"got {span_relationship!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("oban_bridge")
    except PackageNotFoundError:  # running from a source tree
        ours = None
    tracer = trace.get_tracer("oban_bridge", ours, tracer_provider=tracer_provider)
    _config = _Config(tracer, span_relationship, jobs, inserts, tracer_provider is None)


def teardown() -> None:
    """Stop tracing (spans already started still end)."""
    global _config
    _config = None


def tracing_jobs() -> bool:
    return _config is not None and _config.jobs


# --- inserts ------------------------------------------------------------------------------------

def _inject(job: Job) -> Job:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return replace(job, meta={**job.meta, **carrier}) if carrier else job


def _passed_through(job: Job) -> Job:
    """With no SDK no span is made, but a context that is current all the same (an isolated
    child's attempt, a remote parent an app attached) still travels on, as W3C propagation does."""
    return _inject(job) if trace.get_current_span().get_span_context().is_valid else job


def carry(job: Job) -> Job:
    """The job with the current trace context in its meta, when inserts are traced (for jobs
    written by plans outside `insert`, such as a Hephaestus hand-over's AdvanceWorker)."""
    config = _config
    if config is None or not config.inserts:
        return job
    return _passed_through(job) if _no_sdk(config) else _inject(job)


def _send_attributes(job: Job) -> dict[str, Any]:
    """opentelemetry_oban.ex attributes_before_insert/1."""
    return {"messaging.system": "oban", "messaging.operation.name": "send", "messaging.client.id": job.worker,
            "messaging.destination.name": job.queue, "messaging.operation.type": "create",
            "oban.job.worker": job.worker}


@contextlib.contextmanager
def _failing_as_elixir(span: Any) -> Iterator[None]:
    """An insert that raises: the SDK records the exception and the ERROR status as it leaves the
    span; `error.type` is the one attribute opentelemetry_oban's insert!/insert_all add of their own."""
    try:
        yield
    except Exception as exc:
        from .executor import exception_name

        span.set_attribute("error.type", exception_name(exc))
        raise


@contextlib.contextmanager
def insert_span(job: Job) -> Iterator[tuple[Any, Job]]:
    """`with insert_span(job) as (span, job):` — the span, and the job to insert (its meta
    carrying the context), or (None, job) when inserts are not traced (opentelemetry_oban.ex
    insert/3: a PRODUCER span "send <queue>")."""
    config = _config
    if config is None or not config.inserts:
        yield None, job
        return
    if _no_sdk(config):
        yield None, _passed_through(job)
        return
    with config.tracer.start_as_current_span(f"send {job.queue}", kind=SpanKind.PRODUCER,
                                             attributes=_send_attributes(job)) as span, _failing_as_elixir(span):
        yield span, _inject(job)


def inserted(span: Any, job: Job) -> None:
    """attributes_after_insert/1: what only the inserted row knows."""
    if span is not None and job.id is not None:
        span.set_attributes({"messaging.message.id": job.id, "oban.job.job_id": job.id,
                             "oban.job.priority": job.priority, "oban.job.max_attempts": job.max_attempts})


@contextlib.contextmanager
def insert_all_span(jobs: list[Job]) -> Iterator[list[Job]]:
    """One PRODUCER span "send" for a batch, as opentelemetry_oban's insert_all/3: jobs of many
    workers and queues, so no job attributes but the count; each job's meta carries the context."""
    config = _config
    if config is None or not config.inserts:
        yield jobs
        return
    if _no_sdk(config):
        yield [_passed_through(job) for job in jobs]
        return
    attributes = {"messaging.system": "oban", "messaging.operation.name": "send",
                  "messaging.operation.type": "create", "messaging.batch.message_count": len(jobs)}
    with config.tracer.start_as_current_span("send", kind=SpanKind.PRODUCER, attributes=attributes) as span, \
            _failing_as_elixir(span):
        yield [_inject(job) for job in jobs]


# --- attempts -----------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _propagated(meta: Mapping[str, Any], relationship: str) -> tuple[Any, list[Any]]:
    """(parent context, links) from the context a producer left in meta."""
    if relationship == "none" or not isinstance(meta, Mapping):
        return None, []
    carrier = {key: value for key, value in meta.items() if isinstance(value, str)}
    if not carrier:
        return None, []
    ctx = propagate.extract(carrier)
    span_context = trace.get_current_span(ctx).get_span_context()
    if not span_context.is_valid:
        return None, []
    if relationship == "child":
        return ctx, []
    return None, [Link(span_context)]


@dataclass(frozen=True, slots=True)
class JobSpan:
    """An attempt's span, and the context its code runs in: the span on an empty context, or with
    `"child"` on the producer's whole context, baggage included (job_handler.ex attaches the
    extracted context as it is, then starts the span in it)."""

    span: Any
    context: Any


def start_job_span(job: Job) -> JobSpan | None:
    """The attempt's span, started now (job_handler.ex handle_job_start/4), or None when off or
    when the tracer makes no spans at all (the API without an SDK)."""
    config = _config
    if config is None or not config.jobs or _no_sdk(config):
        return None
    meta = job.meta
    parent, links = _propagated(meta, config.relationship) if meta else (None, [])
    # The messaging attributes go in at the start, where a sampler can see them; the rest only on
    # a span that records (a sampled-out span is cheap: it is made for its context alone).
    attributes = {
        "messaging.system": "oban",
        "messaging.operation.name": "process",
        "messaging.message.id": job.id,
        "messaging.client.id": job.worker,
        "messaging.destination.name": job.queue,
        "messaging.operation.type": "process",
    }
    if job.id is None:  # a job perform_job built, never inserted: OpenTelemetry refuses None values
        del attributes["messaging.message.id"]
    # With a link (or none), a root span: the attempt does not run inside whatever happens to be
    # current where it was dispatched, as an Oban job process starts with an empty context.
    span = config.tracer.start_span(f"process {job.queue}", context=parent or _EMPTY, kind=SpanKind.CONSUMER,
                                    attributes=attributes, links=links)
    if span.is_recording():
        more: dict[str, Any] = {
            "oban.job.job_id": job.id,
            "oban.job.worker": job.worker,
            "oban.job.queue": job.queue,
            "oban.job.priority": job.priority,
            "oban.job.attempt": job.attempt,
            "oban.job.max_attempts": job.max_attempts,
            "oban.job.inserted_at": _iso(job.inserted_at),
            "oban.job.scheduled_at": _iso(job.scheduled_at),
            "oban.job.attempted_at": _iso(job.attempted_at),
        }
        if job.id is None:
            del more["oban.job.job_id"]
        workflow = meta.get("workflow_id") if isinstance(meta, Mapping) else None
        if workflow is not None:
            more["oban.job.workflow_id"] = str(workflow)
        span.set_attributes(more)
    elif not span.get_span_context().is_valid:
        return None  # a no-op tracer: nothing to end, nothing to carry on
    return JobSpan(span, trace.set_span_in_context(span, parent or _EMPTY))


def end_job_span(job_span: JobSpan | None, outcome: Outcome | None, exc: BaseException | None) -> None:
    """handle_job_stop/4 and handle_job_exception/4: durations, and for a failed attempt (an
    exception, an `Error` result, a timeout) the exception recorded and an ERROR status."""
    if job_span is None:
        return
    span = job_span.span
    if outcome is not None and span.is_recording():
        span.set_attributes({"oban.job.duration_us": round(outcome.duration * 1e6),
                             "oban.job.queue_time_us": round(outcome.queue_time * 1e6)})
        if outcome.event in ("failure", "exhausted"):
            if exc is not None and not _formatted(exc):
                from .executor import exception_name

                span.record_exception(exc)
                span.set_attribute("error.type", exception_name(exc))
            else:
                kind, text, stack = _banner(_error_text(outcome.ack.error))
                # As Span.record_exception/3 writes an Elixir exception: the module's full name as
                # the type, Exception.message/1 (no "** (...)" banner), a stacktrace always.
                full = f"Elixir.{kind}" if kind.startswith("Oban.") else kind
                span.add_event("exception", {"exception.type": full, "exception.message": text,
                                             "exception.stacktrace": stack})
                span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, ""))
    span.end()


def _formatted(exc: BaseException) -> bool:
    from .executor import FormattedError

    return isinstance(exc, FormattedError)


_BANNER = re.compile(r"\*\* \(([\w.]+)\) ?")


def _banner(text: str) -> tuple[str, str, str]:
    """(type, message, stacktrace) from a formatted error as Oban's errors entry holds it: the
    "** (Oban.PerformError) …" banner, then the frames (an isolated child's exception arrives
    formatted too: "** (ValueError) …")."""
    match = _BANNER.match(text)
    if match is None:
        return "Oban.PerformError", text, ""
    message, _, stack = text[match.end():].partition("\n")
    return match[1], message, stack


def _error_text(error: str | None) -> str:
    if not error:
        return ""
    import orjson

    try:
        return str(orjson.loads(error).get("error", error))
    except (orjson.JSONDecodeError, AttributeError):
        return error


def call_in(job_span: JobSpan | None, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn`, run in the attempt's context (a `def` job on its thread)."""
    if job_span is None:
        return fn

    def run(arg: Any) -> Any:
        token = otel_context.attach(job_span.context)
        try:
            return fn(arg)
        finally:
            otel_context.detach(token)

    return run


async def await_in(job_span: JobSpan | None, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await an `async def` job in the attempt's context."""
    if job_span is None:
        return await coro
    token = otel_context.attach(job_span.context)
    try:
        return await coro
    finally:
        otel_context.detach(token)


# --- isolated children (isolation.py) -----------------------------------------------------------

def handing_over(job_span: JobSpan | None) -> dict[str, str] | None:
    """What an isolated child needs to run a job in its attempt's context: that context in the
    text-map form an insert writes (baggage included), or None when the attempt is not traced."""
    if job_span is None or _config is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=job_span.context)
    return carrier


@contextlib.contextmanager
def taken_over(carrier: dict[str, str] | None) -> Iterator[None]:
    """In an isolated child: the job runs in its attempt's context, so its own spans are the
    attempt's children (with an SDK set up in the child, by the worker module) and the jobs it
    inserts carry the context on (with or without one: the context passes through)."""
    if not carrier or trace is None:
        yield
        return
    global _config
    if _config is None:
        setup(jobs=False)  # inserts only: a child runs no attempts of its own
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
