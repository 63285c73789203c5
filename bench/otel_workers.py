"""bench_workers with an OpenTelemetry SDK set up as an app would, exporting to nowhere: spans are
made, sampled, batched and handed to an exporter that drops them. What `--otel` costs a node, less
the network a real exporter adds (bench/run.py, the `observe` measure)."""

from __future__ import annotations

from collections.abc import Sequence

from bench_workers import *  # noqa: F403 - the same workers
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Dropped()))
trace.set_tracer_provider(provider)
