"""OpenTelemetry: a spawn inside a span carries traceparent, and the run's span continues that trace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _support.polling import eventually
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from teguh.app import App

from .conftest import Q


class _Recording(SimpleSpanProcessor):
    """Exports only while a test of this module runs: later tests' runs keep no spans in memory."""

    on = False

    def on_end(self, span: Any) -> None:
        if self.on:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_PROCESSOR = _Recording(_EXPORTER)
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(_PROCESSOR)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once: OpenTelemetry allows no second one), spans cleared."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(_PROVIDER)
    assert trace.get_tracer_provider() is _PROVIDER
    _EXPORTER.clear()
    _PROCESSOR.on = True
    yield _EXPORTER
    _PROCESSOR.on = False
    _EXPORTER.clear()


@pytest.mark.timeout(60)
def test_the_run_span_is_a_child_of_the_spawning_span(
    app: App, start_worker: Any, exporter: InMemorySpanExporter, db: Any
) -> None:
    @app.task("traced")
    def traced(params: Any) -> Any:
        # the handler runs inside the run's span: its own spans are children
        with trace.get_tracer("handler").start_as_current_span("inside"):
            return params

    tracer = trace.get_tracer("web")
    with tracer.start_as_current_span("request") as request:
        task_id = traced.spawn(1).task_id
    plain = traced.spawn(2).task_id  # no active span: no traceparent
    headers = _headers(db, task_id)
    parent = request.get_span_context()
    assert (
        headers["traceparent"] == f"00-{parent.trace_id:032x}-{parent.span_id:016x}-{parent.trace_flags:02x}"
    )
    assert "traceparent" not in _headers(db, plain)

    start_worker()
    assert app.client.wait_for_result(Q, task_id, timeout=15).result == 1
    assert app.client.wait_for_result(Q, plain, timeout=15).result == 2

    def runs() -> list[Any]:
        return [s for s in exporter.get_finished_spans() if s.name == "teguh.run traced"]

    eventually(lambda: len(runs()) == 2, timeout=10)
    run = next(s for s in runs() if s.attributes["teguh.task_id"] == task_id)
    assert run.context.trace_id == parent.trace_id
    assert run.parent is not None and run.parent.span_id == parent.span_id
    assert run.kind == trace.SpanKind.CONSUMER
    assert run.attributes["teguh.queue"] == Q and run.attributes["teguh.attempt"] == 1
    inside = next(s for s in exporter.get_finished_spans() if s.name == "inside" and s.parent == run.context)
    assert inside.context.trace_id == parent.trace_id
    other = next(s for s in runs() if s.attributes["teguh.task_id"] == plain)
    assert other.parent is None and other.context.trace_id != parent.trace_id


@pytest.mark.timeout(60)
def test_a_failing_run_records_the_error(app: App, start_worker: Any, exporter: InMemorySpanExporter) -> None:
    @app.task("broken", max_attempts=1)
    def broken(params: Any) -> Any:
        raise ValueError("bad input")

    task_id = broken.spawn().task_id
    start_worker()
    assert app.client.wait_for_result(Q, task_id, timeout=15).state == "failed"
    eventually(lambda: any(s.name == "teguh.run broken" for s in exporter.get_finished_spans()), timeout=10)
    span = next(s for s in exporter.get_finished_spans() if s.name == "teguh.run broken")
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_explicit_traceparent_header_is_kept(app: App, exporter: InMemorySpanExporter, db: Any) -> None:
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with trace.get_tracer("web").start_as_current_span("request"):
        task_id = app.spawn_task("x", headers={"traceparent": mine, "k": 1}).task_id
    assert _headers(db, task_id) == {"traceparent": mine, "k": 1}


def _headers(db: Any, task_id: str) -> dict[str, Any]:
    return db.value(f"select headers from teguh.t_{Q} where task_id = %s", task_id) or {}


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


@pytest.mark.timeout(60)
def test_a_hostile_exception_still_fails_the_run_as_itself(
    app: App, start_worker: Any, exporter: InMemorySpanExporter
) -> None:
    @app.task("hostile", max_attempts=1)
    def hostile(params: Any) -> Any:
        raise _BrokenStr()

    task_id = hostile.spawn().task_id
    start_worker()
    result = app.client.wait_for_result(Q, task_id, timeout=15)
    assert result.state == "failed" and result.failure["type"] == "_BrokenStr"
    eventually(lambda: any(s.name == "teguh.run hostile" for s in exporter.get_finished_spans()), timeout=10)
    span = next(s for s in exporter.get_finished_spans() if s.name == "teguh.run hostile")
    assert span.status.status_code == trace.StatusCode.ERROR and span.status.description == "_BrokenStr"
