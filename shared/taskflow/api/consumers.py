"""The edges of the event, cron and invocation functions, following the sender's delivery contract.

2xx ``SUCCESS`` when applied or already applied; non-2xx when a retry may succeed (database
down). An event that can never be processed is answered so that the sender dead-letters it
without retrying: ``200 {"status": "DROP"}`` for Dapr, which moves it to ``<topic>-dlq``; with
``TASKFLOW_EVENT_DELIVERY=knative``, ``400`` ("unparsable event" in Knative's data-plane
contract: not retried), which KafkaSource hands to its dead-letter sink.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Request, Response
from sqlalchemy.exc import DBAPIError, OperationalError

from taskflow import events, telemetry
from taskflow.api.http import HttpError, json_response, problem, require_app_token
from taskflow.config import Settings
from taskflow.service_layer.errors import RetryableError

log = logging.getLogger("taskflow.consumer")

SUCCESS = {"status": "SUCCESS"}
DROP = {"status": "DROP"}


def healthz(request: Request) -> Response | None:
    if request.method == "GET" and request.path.rstrip("/") == "/healthz":
        return json_response({"status": "ok"})
    return None


def guarded(request: Request, settings: Settings, run: Callable[[], Response]) -> Response:
    """Health check, app-token check and problem+json mapping common to every sidecar-facing route."""
    health = healthz(request)
    if health is not None:
        telemetry.set_route("/healthz")
        return health
    try:
        require_app_token(request, settings.app_api_token)
        if telemetry.current_route.get() is None:
            telemetry.set_route(request.path)  # the sidecar calls only the fixed routes of subscriptions and bindings
        return run()
    except HttpError as err:
        return problem(err, request.path)


def consume(
    request: Request,
    settings: Settings,
    accept: tuple[str, ...],
    apply: Callable[[events.Received], str],
    apply_batch: Callable[[list[events.Received]], Sequence[str | RetryableError]] | None = None,
    warm: Callable[[], None] | None = None,
) -> Response:
    """Parse one CloudEvent delivery and apply it; the answer tells Dapr what to do next.

    A Dapr bulk delivery (``bulkSubscribe`` in the Subscription) is answered per entry; its events
    go to ``apply_batch`` (one transaction for all) when the function has one, else one by one.
    ``apply_batch`` answers an outcome per event, or a RetryableError for an event to redeliver
    alone (a failed webhook); an exception it raises redelivers the whole batch. The local stack's
    readiness probe is answered SUCCESS after ``warm()`` (opening the database connection the first
    real event would otherwise wait for)."""

    def run() -> Response:
        if request.method != "POST":
            raise HttpError(405, "Method not allowed", "deliveries are POST", headers={"Allow": "POST"})
        started = time.perf_counter()
        try:
            body = _body(request)
        except events.PoisonEvent as exc:
            settled(None, "drop", started, str(exc))
            if settings.event_delivery == "knative":
                return problem(HttpError(400, "Unprocessable event", str(exc), slug="poison-event"), request.path)
            return json_response(DROP)
        entries = _bulk_entries(request, body)
        if entries is not None:
            return json_response({"statuses": run_bulk(entries, started)})
        if _is_probe(request.headers.get("ce-type"), body):
            return probed()
        try:
            if len(body) > events.MAX_EVENT_BYTES:
                raise events.PoisonEvent(f"event is over the {events.MAX_EVENT_BYTES}-byte limit")
            received = events.parse(dict(request.headers), body)
        except events.PoisonEvent as exc:
            settled(None, "drop", started, str(exc))
            if settings.event_delivery == "knative":
                return problem(HttpError(400, "Unprocessable event", str(exc), slug="poison-event"), request.path)
            return json_response(DROP)
        if received.type not in accept:
            # KafkaSource cannot filter by type: events this function does not handle are done.
            log.debug("ignored %s (%s): not handled here", received.id, received.type)
            return json_response(SUCCESS)
        try:
            outcome = apply(received)
        except (RetryableError, OperationalError, DBAPIError) as exc:
            settled(received, "retry", started, type(exc).__name__ + ": " + str(exc)[:200])
            return json_response({"status": "RETRY"}, status=500)
        settled(received, "duplicate" if outcome == "duplicate" else "success", started, outcome)
        return json_response(SUCCESS)

    def probed() -> Response:
        if warm is not None:
            try:
                warm()
            except Exception as exc:  # a readiness aid only: the real events find out for themselves
                log.warning("warming up on the readiness probe failed: %s", type(exc).__name__)
        return json_response(SUCCESS)

    def run_bulk(entries: list[dict[str, Any]], started: float) -> list[dict[str, str]]:
        statuses: dict[str, str] = {}
        batch: list[tuple[str, events.Received]] = []
        carriers: list[dict[str, str]] = []
        for entry in entries:
            entry_id = str(entry.get("entryId", ""))
            event = entry.get("event")
            if isinstance(event, dict) and event.get("type") == PROBE_TYPE:
                probed()
                statuses[entry_id] = "SUCCESS"
                continue
            try:
                received = events.parse(
                    {"content-type": str(entry.get("contentType") or "application/cloudevents+json")},
                    _entry_body(entry),
                )
            except events.PoisonEvent as exc:
                settled(None, "drop", started, str(exc))
                statuses[entry_id] = "DROP"
                continue
            if received.type not in accept:
                statuses[entry_id] = "SUCCESS"
                continue
            batch.append((entry_id, received))
            carriers.append({k: v for k, v in event.items() if k in _TRACE_KEYS} if isinstance(event, dict) else {})
        with contextlib.ExitStack() as spans:
            # one span per event, continuing the trace its writer started (the delivery has no single one)
            route = telemetry.current_route.get() or request.path
            for carrier in carriers:
                attributes = {"http.request.method": "POST", "http.route": route}
                spans.enter_context(telemetry.continued(carrier, f"POST {route}", kind="SERVER", **attributes))
            apply_all(batch, statuses, started)
        return [{"entryId": entry_id, "status": status} for entry_id, status in statuses.items()]

    def apply_all(batch: list[tuple[str, events.Received]], statuses: dict[str, str], started: float) -> None:
        if apply_batch is not None and batch:
            try:
                outcomes = apply_batch([r for _, r in batch])
            except (RetryableError, OperationalError, DBAPIError) as exc:
                for entry_id, received in batch:
                    settled(received, "retry", started, type(exc).__name__ + ": " + str(exc)[:200])
                    statuses[entry_id] = "RETRY"
            else:
                for (entry_id, received), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, RetryableError):
                        settled(received, "retry", started, type(outcome).__name__ + ": " + str(outcome)[:200])
                        statuses[entry_id] = "RETRY"
                        continue
                    settled(received, "duplicate" if outcome == "duplicate" else "success", started, outcome)
                    statuses[entry_id] = "SUCCESS"
        else:
            for entry_id, received in batch:
                try:
                    outcome = apply(received)
                except (RetryableError, OperationalError, DBAPIError) as exc:
                    settled(received, "retry", started, type(exc).__name__ + ": " + str(exc)[:200])
                    statuses[entry_id] = "RETRY"
                else:
                    settled(received, "duplicate" if outcome == "duplicate" else "success", started, outcome)
                    statuses[entry_id] = "SUCCESS"

    def settled(received: events.Received | None, outcome: str, started: float, detail: str) -> None:
        """One log line and the metrics for a settled delivery (a drop goes to the dead-letter topic)."""
        seconds = time.perf_counter() - started
        etype = received.type if received is not None else "other"
        app = telemetry.current_app.get()
        ins = telemetry.instruments()
        ins.events_processed.add(1, {"app": app, "type": etype, "outcome": outcome})
        ins.event_duration.record(seconds, {"app": app, "type": etype, "outcome": outcome})
        fields = {
            "event_id": received.id if received is not None else "",
            "event_type": etype,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2),
        }
        if outcome == "drop":
            # /events/reminders <- reminders; /events/task-* <- task-events (dapr/subscriptions.yaml)
            topic = telemetry.REMINDER_TOPIC if "reminder" in request.path else telemetry.TASK_TOPIC
            ins.dead_letters.add(1, {"topic": topic})
            log.error("DROP to the dead-letter topic: %s", detail, extra=fields)
        elif outcome == "retry":
            log.warning("RETRY %s (%s): %s", fields["event_id"], etype, detail, extra=fields)
        else:
            log.info("%s %s (%s): %s", outcome, fields["event_id"], etype, detail, extra=fields)

    return guarded(request, settings, run)


#: The local stack's readiness probe (tools/pipeline_probe.py): an event every consumer answers
#: SUCCESS without effect, log line or metric, so that it proves delivery without being dead-lettered.
PROBE_TYPE = "com.taskflow.stack.probe.v1"


def _is_probe(ce_type: str | None, body: bytes) -> bool:
    """The probe, structured (its JSON's ``type``) or binary (the ``ce-type`` header)."""
    if ce_type is not None:
        return ce_type == PROBE_TYPE
    if PROBE_TYPE.encode() not in body[:4096]:
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("type") == PROBE_TYPE


#: A bulk delivery holds at most 100 events (the Subscriptions' ``maxMessagesCount``) of a few
#: kilobytes each; this bounds what is read of any delivery.
MAX_BULK_BYTES = 8 * 1024 * 1024
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
_TRACE_KEYS = ("traceparent", "tracestate")


def _body(request: Request) -> bytes:
    """The delivery's body, never read past what a bulk delivery may hold; a single event over the
    broker's message limit is poison (checked once the body is known not to be a bulk delivery)."""
    limit = MAX_BULK_BYTES
    length = request.content_length
    if length is not None and length > limit:
        raise events.PoisonEvent(f"delivery of {length} bytes is over the {limit}-byte limit")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise events.PoisonEvent(f"delivery is over the {limit}-byte limit")
    return data


def _bulk_entries(request: Request, body: bytes) -> list[dict[str, Any]] | None:
    """The entries of a Dapr bulk delivery, or None for a single event."""
    if not body.lstrip().startswith(b"{") or b'"entries"' not in body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or parsed.get("type") != BULK_EVENT_TYPE:
        return None
    entries = parsed.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return entries


def _entry_body(entry: dict[str, Any]) -> bytes:
    """One bulk entry's event as bytes: a CloudEvent object, or the text Dapr put there."""
    event = entry.get("event")
    data = event.encode() if isinstance(event, str) else json.dumps(event).encode()
    if len(data) > events.MAX_EVENT_BYTES:
        raise events.PoisonEvent(f"event is over the {events.MAX_EVENT_BYTES}-byte limit")
    return data


def cron(request: Request, settings: Settings, tick: Callable[[], dict[str, Any]]) -> Response:
    """A cron binding (or PingSource) trigger: POST with an empty body; answer exactly 200."""

    def run() -> Response:
        if request.method != "POST":
            raise HttpError(405, "Method not allowed", "cron triggers are POST", headers={"Allow": "POST"})
        try:
            result = tick()
        except (OperationalError, DBAPIError) as exc:
            log.warning("cron tick failed, next tick retries: %s", type(exc).__name__)
            raise HttpError(503, "Database unavailable", "the tick will be retried") from exc
        return json_response(result)

    return guarded(request, settings, run)
