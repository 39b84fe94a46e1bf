"""OpenTelemetry: the spawning request's trace carried to the run, at no cost without OpenTelemetry.

A spawn made while a span is active adds a W3C `traceparent` (and
`tracestate`, when there is one) to the task's headers; the worker runs the
handler inside a span "teguh.run <task_name>" whose parent is that span, so
the run appears in the request's trace. teguh never imports OpenTelemetry
itself: both sides look it up in `sys.modules`, so an application that does
not use it pays one dictionary lookup, and one that does gets tracing without
configuring teguh (install `teguh[otel]`, or OpenTelemetry's own packages).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import TaskContext

TRACER_NAME = "teguh"


def enabled() -> bool:
    """Whether the application imported OpenTelemetry's tracing API (teguh never does)."""
    return "opentelemetry.trace" in sys.modules


def with_traceparent(headers: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """`headers` plus the active span's `traceparent`, or `headers` unchanged.

    Unchanged when OpenTelemetry is not imported, no span is active (or it is
    not sampled-valid), or the headers already hold a `traceparent`.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or (headers is not None and "traceparent" in headers):
        return headers
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return headers
    added = {
        "traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    }
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    if state:
        added["tracestate"] = state
    return {**(headers or {}), **added}


@contextlib.contextmanager
def run_span(ctx: TaskContext) -> Iterator[Any]:
    """The span of one run, current while the handler runs; a child of the spawner's span if any.

    An exception (other than teguh's control-flow signals, which are not
    errors) is recorded on the span and sets its status to error.
    """
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = None
    headers = ctx.headers
    if isinstance(headers, dict) and isinstance(headers.get("traceparent"), str):
        carrier = {"traceparent": headers["traceparent"]}
        if isinstance(headers.get("tracestate"), str):
            carrier["tracestate"] = headers["tracestate"]
        parent = TraceContextTextMapPropagator().extract(carrier)
    tracer = trace.get_tracer(TRACER_NAME)
    attributes = {
        "teguh.queue": ctx.queue,
        "teguh.task_id": str(ctx.task_id),
        "teguh.task_name": ctx.task_name,
        "teguh.run_id": str(ctx.run_id),
        "teguh.attempt": ctx.attempt,
    }
    with tracer.start_as_current_span(
        f"teguh.run {ctx.task_name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            _record_error(trace, span, exc)
            raise
        except BaseException as exc:  # Suspended, Cancelled, LeaseLost: how the run ended, not an error
            span.set_attribute("teguh.outcome", type(exc).__name__)
            raise


def _record_error(trace: Any, span: Any, exc: Exception) -> None:
    """Mark the span failed by `exc`; never raises, so the handler's own exception goes on unchanged.

    A hostile exception (its `__str__` raises) must still fail the run as itself.
    """
    try:
        description = f"{type(exc).__name__}: {exc}"[:1000]
    except Exception:
        description = type(exc).__name__
    try:
        span.record_exception(exc)
    except Exception:
        span.set_attribute("exception.type", type(exc).__name__)
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))
