"""What every layer may record: the current W3C trace context and TaskFlow's metric instruments.

Only the OpenTelemetry *API* is used here (a no-op until ``taskflow.observability`` installs the
SDK), imported on first use so that a function's cold start does not pay for it at import time.
Metric names follow the OpenTelemetry semantic conventions; the Prometheus exporter turns
``http.server.request.duration`` (unit ``s``) into ``http_server_request_duration_seconds``.
Label values are always from small fixed sets: never an id, a user, an e-mail or a URL.
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: Buckets for durations in seconds (the semantic conventions' advice for HTTP server durations).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LATENESS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
TASK_TOPIC, REMINDER_TOPIC = "task-events", "reminders"
KNOWN_TOPICS = (TASK_TOPIC, REMINDER_TOPIC)

#: The Dapr app id of the function serving the current request (set by the request wrapper).
current_app: contextvars.ContextVar[str] = contextvars.ContextVar("taskflow_app", default="taskflow")
#: The route template of the current request (``/v1/tasks/{task_id}``), for spans and metrics.
current_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("taskflow_route", default=None)


def set_route(template: str) -> None:
    """Name the current request's route by its template (never a raw path with ids)."""
    current_route.set(template)


# --- trace context -------------------------------------------------------------------------


def _span_context() -> Any:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


def trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside a trace."""
    ctx = _span_context()
    return f"{ctx.trace_id:032x}" if ctx is not None else None


def traceparent() -> dict[str, str]:
    """The current context as CloudEvent distributed-tracing attributes (empty outside a trace).

    ``traceid`` repeats ``traceparent``: Dapr keeps a published event's own trace context only
    when that attribute is present (and overwrites it otherwise)."""
    ctx = _span_context()
    if ctx is None:
        return {}
    value = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    out = {"traceparent": value, "traceid": value}
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    if state:
        out["tracestate"] = state
    return out


@contextmanager
def continued(carrier: dict[str, str], name: str, kind: str = "INTERNAL", **attributes: Any) -> Iterator[Any]:
    """A span continuing the trace context in ``carrier`` (``traceparent``/``tracestate`` keys);
    a new trace when it has none."""
    from opentelemetry import propagate, trace

    parent = propagate.extract({k: v for k, v in carrier.items() if isinstance(v, str)})
    with tracer().start_as_current_span(
        name, context=parent, kind=getattr(trace.SpanKind, kind), attributes=attributes
    ) as span:
        yield span


@cache
def tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("taskflow")


# --- metrics -------------------------------------------------------------------------------


class Instruments:
    """TaskFlow's instruments, created once per process on first use."""

    def __init__(self) -> None:
        from opentelemetry import metrics

        m = metrics.get_meter("taskflow")
        self.http_duration = m.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.events_processed = m.create_counter(
            "taskflow.events.processed", unit="", description="Events a consumer settled, by outcome."
        )
        self.event_duration = m.create_histogram(
            "taskflow.event.processing.duration",
            unit="s",
            description="Time a consumer spent on one event delivery.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.events_published = m.create_counter(
            "taskflow.events.published", unit="", description="Outbox events accepted by the broker (or bus)."
        )
        self.outbox_pending = m.create_gauge(
            "taskflow.outbox.pending", unit="", description="Outbox rows not yet published."
        )
        self.outbox_oldest_age = m.create_gauge(
            "taskflow.outbox.oldest_age", unit="s", description="Age of the oldest unpublished outbox row."
        )
        self.reminders_dispatched = m.create_counter(
            "taskflow.reminders.dispatched", unit="", description="reminder.due events recorded, by lateness."
        )
        self.reminders_missed = m.create_counter(
            "taskflow.reminders.missed", unit="", description="Reminders missed by more than the grace period."
        )
        self.reminder_lateness = m.create_histogram(
            "taskflow.reminder.lateness",
            unit="s",
            description="Dispatch time minus the reminder's fire_at.",
            explicit_bucket_boundaries_advisory=LATENESS_BUCKETS,
        )
        self.webhook_deliveries = m.create_counter(
            "taskflow.webhook.deliveries", unit="", description="Webhook delivery attempts, by outcome."
        )
        self.occurrences_created = m.create_counter(
            "taskflow.recurrence.occurrences_created", unit="", description="Next occurrences created."
        )
        self.dead_letters = m.create_counter(
            "taskflow.dead_letters", unit="", description="Events sent to a dead-letter topic."
        )


_instruments: Instruments | None = None
_lock = threading.Lock()


def instruments() -> Instruments:
    global _instruments
    if _instruments is None:
        with _lock:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


def topic_label(topic: str | None) -> str:
    """A bounded ``topic`` label value."""
    base = (topic or "").removesuffix("-dlq")
    return base if base in KNOWN_TOPICS else "other"
