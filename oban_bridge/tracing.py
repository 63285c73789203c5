"""OpenTelemetry traces for inserts and job attempts, in opentelemetry_oban's shape
(opentelemetry-erlang-contrib, instrumentation/opentelemetry_oban: lib/opentelemetry_oban.ex for
inserts, lib/opentelemetry_oban/job_handler.ex for attempts), so one trace crosses languages.

- An insert is a `PRODUCER` span named `"<worker> send"` (`insert_all`: `"Oban bulk insert"`). The
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


def carry(job: Job) -> Job:
    """The job with the current trace context in its meta, when inserts are traced (for jobs
    written by plans outside `insert`, such as a Hephaestus hand-over's AdvanceWorker)."""
    config = _config
    return _inject(job) if config is not None and config.inserts and not _no_sdk(config) else job


@contextlib.contextmanager
def insert_span(job: Job) -> Iterator[tuple[Any, Job]]:
    """`with insert_span(job) as (span, job):` — the span, and the job to insert (its meta
    carrying the context), or (None, job) when inserts are not traced."""
    config = _config
    if config is None or not config.inserts or _no_sdk(config):
        yield None, job
        return
    attributes = {"messaging.system": "oban", "messaging.destination.name": job.queue, "oban.job.worker": job.worker}
    with config.tracer.start_as_current_span(f"{job.worker} send", kind=SpanKind.PRODUCER,
                                             attributes=attributes) as span:
        yield span, _inject(job)


def inserted(span: Any, job: Job) -> None:
    if span is not None and job.id is not None:
        span.set_attributes({"oban.job.job_id": job.id, "oban.job.priority": job.priority,
                             "oban.job.max_attempts": job.max_attempts})


@contextlib.contextmanager
def insert_all_span(jobs: list[Job]) -> Iterator[list[Job]]:
    """One span for a batch, as opentelemetry_oban's insert_all: jobs of many workers and queues,
    so no job attributes; each job's meta carries the context."""
    config = _config
    if config is None or not config.inserts or _no_sdk(config):
        yield jobs
        return
    with config.tracer.start_as_current_span("Oban bulk insert", kind=SpanKind.PRODUCER):
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


def start_job_span(job: Job) -> Any:
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
        workflow = meta.get("workflow_id") if isinstance(meta, Mapping) else None
        if workflow is not None:
            more["oban.job.workflow_id"] = str(workflow)
        span.set_attributes(more)
    elif not span.get_span_context().is_valid:
        return None  # a no-op tracer: nothing to end, nothing to carry on
    return span


def end_job_span(span: Any, outcome: Outcome | None, exc: BaseException | None) -> None:
    """handle_job_stop/4 and handle_job_exception/4: durations, and for a failed attempt (an
    exception, an `Error` result, a timeout) the exception recorded and an ERROR status."""
    if span is None:
        return
    if outcome is not None and span.is_recording():
        span.set_attributes({"oban.job.duration_us": round(outcome.duration * 1e6),
                             "oban.job.queue_time_us": round(outcome.queue_time * 1e6)})
        if outcome.event in ("failure", "exhausted"):
            if exc is not None and not _formatted(exc):
                from .executor import exception_name

                span.record_exception(exc)
                span.set_attribute("error.type", exception_name(exc))
            else:
                text = _error_text(outcome.ack.error)
                kind = "Oban.TimeoutError" if "(Oban.TimeoutError)" in text else "Oban.PerformError"
                span.add_event("exception", {"exception.type": kind, "exception.message": text})
                span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, ""))
    span.end()


def _formatted(exc: BaseException) -> bool:
    from .executor import FormattedError

    return isinstance(exc, FormattedError)


def _error_text(error: str | None) -> str:
    if not error:
        return ""
    import orjson

    try:
        return str(orjson.loads(error).get("error", error))
    except (orjson.JSONDecodeError, AttributeError):
        return error


def call_in(span: Any, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn`, run with the attempt's span current (a `def` job on its thread)."""
    if span is None:
        return fn

    def run(arg: Any) -> Any:
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return fn(arg)
        finally:
            otel_context.detach(token)

    return run


async def await_in(span: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await an `async def` job with the attempt's span current."""
    if span is None:
        return await coro
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        return await coro
    finally:
        otel_context.detach(token)
