"""Monitoring as an operator and a user see it (embedded mode): W3C trace context in and out, trace ids
in problem bodies and logs, events that continue the writer's trace, and the Prometheus metrics.

Spans are read with the OpenTelemetry SDK's in-memory exporter added to the process's real tracer
provider; metrics are scraped over HTTP from the real Prometheus endpoint."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from taskflow import events, observability
from taskflow.adapters import tables
from tests.conftest import TEST_SECRET, Clock, auth, token
from tests.functions.test_consumers import Receiver, Recorder, receiver  # noqa: F401 (a fixture)
from tests.functions.test_tasks_api import create, iso

TRACERESPONSE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]$")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture(scope="module")
def spans() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    observability.setup("taskflow")
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    return exporter


@pytest.fixture(scope="module")
def metrics_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert observability.serve_metrics(port) == port
    return f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The JSON lines TASKFLOW_LOG_FORMAT=json writes, captured from the root logger."""
    buf = io.StringIO()
    handler = observability.log_handler("json", buf)
    root = logging.getLogger()
    root.addHandler(handler)
    yield buf
    root.removeHandler(handler)


def parsed(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


# --- trace context -------------------------------------------------------------------------


def test_a_request_continues_the_incoming_traceparent(client: Any, spans: Any) -> None:
    header, trace_id, parent_span = traceparent()
    resp = client.post("/v1/tasks", json={"title": "t"}, headers={**auth(), "traceparent": header})
    assert resp.status_code == 201
    m = TRACERESPONSE.match(resp.headers["traceresponse"])
    assert m and m.group(1) == trace_id and m.group(2) != parent_span
    server = [s for s in spans.get_finished_spans() if s.context.span_id == int(m.group(2), 16)]
    assert len(server) == 1 and server[0].parent.span_id == int(parent_span, 16)
    assert server[0].name == "POST /v1/tasks"
    assert server[0].attributes["http.route"] == "/v1/tasks"
    assert server[0].attributes["http.response.status_code"] == 201


def test_without_traceparent_each_request_starts_its_own_trace(client: Any) -> None:
    ids = {TRACERESPONSE.match(client.get("/healthz").headers["traceresponse"]).group(1) for _ in range(3)}  # type: ignore[union-attr]
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/healthz", {}, 200),
        ("get", "/v1/nowhere", {}, 404),
        ("get", "/v1/tasks", {}, 401),
        ("post", "/v1/tasks", {"data": b"{not json", "content_type": "application/json"}, 400),
        ("post", "/v1/tasks", {"json": {"title": ""}}, 422),
        ("put", "/v1/tasks", {}, 405),
        ("get", "/v1/tasks/00000000-0000-0000-0000-000000000000", {}, 404),
    ],
)
def test_every_answer_carries_traceresponse_and_problems_carry_its_trace_id(
    client: Any, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    header, trace_id, _ = traceparent()
    headers = {"traceparent": header, **({} if status == 401 else auth())}
    resp = getattr(client, method)(path, headers=headers, **kwargs)
    assert resp.status_code == status
    m = TRACERESPONSE.match(resp.headers["traceresponse"])
    assert m and m.group(1) == trace_id
    if status >= 400:
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["trace_id"] == trace_id


def test_consumers_and_cron_answer_with_traceresponse(app: Any) -> None:
    header, trace_id, _ = traceparent()
    resp = (
        app.apps["event-fanout"]
        .test_client()
        .post("/cron", data=b"", headers={"content-type": "application/json", "traceparent": header})
    )
    assert resp.status_code == 200 and TRACERESPONSE.match(resp.headers["traceresponse"]).group(1) == trace_id  # type: ignore[union-attr]
    bad = app.apps["audit"].test_client().post("/events/task-events", data=b"{}", headers={"traceparent": header})
    assert bad.get_json() == {"status": "DROP"} and trace_id in bad.headers["traceresponse"]


def _server_spans(spans: Any, trace_id: str) -> list[Any]:
    return [
        s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id and s.kind.name == "SERVER"
    ]


def test_events_continue_the_writers_trace_through_the_consumers(client: Any, app: Any, spans: Any) -> None:
    header, trace_id, _ = traceparent()
    task = create(
        client, title="traced", recurrence={"rule": "FREQ=DAILY", "anchor": "due"}, due_at=iso(datetime.now(UTC))
    )
    resp = client.post(f"/v1/tasks/{task['id']}/complete", headers={**auth(), "traceparent": header})
    assert resp.status_code == 200
    app.bus.drain()
    app.bus.drain()
    with app.root.engine.connect() as conn:
        stored = [json.loads(r[0]) for r in conn.execute(select(tables.outbox.c.event).order_by(tables.outbox.c.seq))]
    completed = [e for e in stored if e["type"] == events.TASK_COMPLETED]
    assert completed and completed[0]["traceparent"].split("-")[1] == trace_id  # the outbox row keeps it
    routes = {s.attributes.get("http.route") for s in _server_spans(spans, trace_id)}
    # audit records it, recurrence creates the next occurrence, and audit records that one too
    assert {"/v1/tasks/{task_id}/complete", "/events/task-events", "/events/task-completed"} <= routes
    created = [e for e in stored if e["type"] == events.TASK_CREATED and e["data"]["task"]["occurrence"] == 2]
    assert created and created[0]["traceparent"].split("-")[1] == trace_id


def test_an_event_relayed_later_still_continues_the_writers_trace(client: Any, app: Any, spans: Any) -> None:
    app.root.use(publisher=Recorder(fail=True))  # the broker is down: the event waits in the outbox
    header, trace_id, _ = traceparent()
    resp = client.post("/v1/tasks", json={"title": "later"}, headers={**auth(), "traceparent": header})
    assert resp.status_code == 201
    assert "/events/task-events" not in {s.attributes.get("http.route") for s in _server_spans(spans, trace_id)}
    app.root.use(publisher=app.bus)
    relay = app.apps["event-fanout"].test_client().post("/cron", data=b"", headers={"content-type": "application/json"})
    assert relay.get_json()["sent"] == 1
    assert trace_id not in relay.headers["traceresponse"]  # the relay tick has a trace of its own
    app.bus.drain()
    assert "/events/task-events" in {s.attributes.get("http.route") for s in _server_spans(spans, trace_id)}


def test_no_task_text_or_token_in_span_attributes(client: Any, spans: Any) -> None:
    marker = "private-" + secrets.token_hex(6)
    bearer = token("alice")
    client.post(
        "/v1/tasks", json={"title": marker, "description": marker}, headers={"Authorization": f"Bearer {bearer}"}
    )
    for span in spans.get_finished_spans():
        text = json.dumps({k: str(v) for k, v in (span.attributes or {}).items()}) + span.name
        assert marker not in text and bearer not in text and TEST_SECRET not in text, span.name


# --- metrics -------------------------------------------------------------------------------


def test_metrics_after_create_complete_and_a_reminder(client: Any, app: Any, clock: Clock, metrics_url: str) -> None:
    before = scrape(metrics_url)
    due = datetime.now(UTC) + timedelta(seconds=1)
    task = create(client, due_at=iso(due), reminders=[{"offset": "PT0S"}])
    app.bus.drain()
    clock.advance(seconds=1.5)
    fired = (
        app.apps["reminder-dispatch"]
        .test_client()
        .post("/cron", data=b"", headers={"content-type": "application/json"})
    )
    assert fired.get_json()["fired"] == 1
    app.bus.drain()
    assert client.post(f"/v1/tasks/{task['id']}/complete", headers=auth()).status_code == 200
    app.bus.drain()
    app.apps["event-fanout"].test_client().post("/cron", data=b"", headers={"content-type": "application/json"})
    after = scrape(metrics_url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"http_request_method": "POST", "http_route": "/v1/tasks", "http_response_status_code": "201"}
    assert grew("http_server_request_duration_seconds_count", **route) == 1
    assert grew("http_server_request_duration_seconds_bucket", le="+Inf", **route) == 1
    assert grew("http_server_request_duration_seconds_count", http_route="/v1/tasks/{task_id}/complete") == 1
    assert grew("taskflow_events_processed_total", app="audit", type=events.TASK_CREATED, outcome="success") == 1
    assert grew("taskflow_events_processed_total", app="notifier", type=events.REMINDER_DUE, outcome="success") == 1
    assert grew("taskflow_event_processing_duration_seconds_count", app="audit") >= 2
    assert grew("taskflow_events_published_total", topic="task-events") == 2
    assert grew("taskflow_events_published_total", topic="reminders") == 1
    assert grew("taskflow_reminders_dispatched_total", late="false") == 1
    assert grew("taskflow_reminder_lateness_seconds_count") == 1
    assert value(after, "taskflow_outbox_pending") == 0
    assert value(after, "taskflow_outbox_oldest_age_seconds") == 0


def test_poison_events_count_as_drops_and_dead_letters(app: Any, metrics_url: str) -> None:
    before = scrape(metrics_url)
    audit = app.apps["audit"].test_client()
    assert audit.post("/events/task-events", data=b"not an event").get_json() == {"status": "DROP"}
    after = scrape(metrics_url)
    assert (
        value(after, "taskflow_dead_letters_total", topic="task-events")
        - value(before, "taskflow_dead_letters_total", topic="task-events")
        == 1
    )
    assert (
        value(after, "taskflow_events_processed_total", app="audit", outcome="drop")
        - value(before, "taskflow_events_processed_total", app="audit", outcome="drop")
        == 1
    )


def test_no_ids_users_or_urls_in_label_values(client: Any, app: Any, metrics_url: str) -> None:
    task = create(client, user="carol@example.com")
    client.get(f"/v1/tasks/{task['id']}", headers=auth("carol@example.com"))
    client.get(f"/v1/tasks/{task['id']}/nowhere", headers=auth("carol@example.com"))
    app.bus.drain()
    samples = scrape(metrics_url)
    assert any(n == "http_server_request_duration_seconds_count" for n, _ in samples)
    for name, labels in samples:
        for label, val in labels:
            assert not UUID.search(val), (name, label, val)
            assert "@" not in val and "://" not in val and "carol" not in val, (name, label, val)


# --- logs ----------------------------------------------------------------------------------


def test_each_settled_event_logs_one_json_line_with_the_trace_id(client: Any, app: Any, log_lines: io.StringIO) -> None:
    header, trace_id, _ = traceparent()
    marker = "private-" + secrets.token_hex(6)
    resp = client.post("/v1/tasks", json={"title": marker}, headers={**auth(), "traceparent": header})
    assert resp.status_code == 201
    app.bus.drain()
    lines = parsed(log_lines)
    settled = [r for r in lines if r.get("app") == "audit" and r.get("event_type") == events.TASK_CREATED]
    assert len(settled) == 1
    line = settled[0]
    assert line["trace_id"] == trace_id and re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
    assert line["level"] == "INFO" and line["logger"] == "taskflow.consumer" and line["outcome"] == "success"
    assert line["event_id"] and isinstance(line["duration_ms"], float) and line["time"]
    assert marker not in log_lines.getvalue()


def test_a_5xx_logs_an_error_with_its_trace_id(app: Any, log_lines: io.StringIO) -> None:
    header, trace_id, _ = traceparent()
    app.root.use(uow_factory=lambda source: (_ for _ in ()).throw(RuntimeError("boom")))
    resp = app.apps["tasks-api"].test_client().get("/v1/tasks", headers={**auth(), "traceparent": header})
    assert resp.status_code == 500 and resp.get_json()["trace_id"] == trace_id
    errors = [r for r in parsed(log_lines) if r["level"] == "ERROR"]
    assert errors and all(r["trace_id"] == trace_id for r in errors)


def test_each_sql_statement_is_a_span_of_the_request_without_its_values(env: str, spans: Any) -> None:
    """The composition root instruments the engine it builds (the embedded and Dapr paths alike)."""
    from taskflow import config
    from taskflow.bootstrap import Root
    from taskflow.embedded import Embedded

    emb = Embedded(root=Root(config.load())).start(timers=False)
    try:
        header, trace_id, _ = traceparent()
        marker = "private-" + secrets.token_hex(6)
        client = emb.apps["tasks-api"].test_client()
        resp = client.post("/v1/tasks", json={"title": marker}, headers={**auth(), "traceparent": header})
        assert resp.status_code == 201
        sql = [
            s
            for s in spans.get_finished_spans()
            if f"{s.context.trace_id:032x}" == trace_id and "db.statement" in (s.attributes or {})
        ]
        statements = [str(s.attributes["db.statement"]) for s in sql]
        assert any("INSERT INTO tasks" in st for st in statements), statements
        assert all(marker not in st for st in statements)
        assert {s.attributes["db.system"] for s in sql} <= {"sqlite", "postgresql"}
    finally:
        emb.stop()


# --- readiness -----------------------------------------------------------------------------


class _Sidecar(BaseHTTPRequestHandler):
    status = 204

    def do_GET(self) -> None:
        self.send_response(_Sidecar.status if self.path == "/v1.0/healthz/outbound" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_readyz_in_dapr_mode_reports_the_sidecar(make_app: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Sidecar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        client = make_app(mode="dapr", dapr_http_port=port).apps["tasks-api"].test_client()
        assert client.get("/readyz").get_json() == {"status": "ready"}
        _Sidecar.status = 500
        resp = client.get("/readyz")
        assert resp.status_code == 503 and "sidecar" in resp.get_json()["detail"] and resp.get_json()["trace_id"]
    finally:
        _Sidecar.status = 204
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    resp = make_app(mode="dapr", dapr_http_port=closed).apps["tasks-api"].test_client().get("/readyz")
    assert resp.status_code == 503 and "sidecar" in resp.get_json()["detail"]


def test_the_reminder_tick_trace_reaches_the_webhook(client: Any, app: Any, clock: Clock, receiver: str) -> None:  # noqa: F811
    """reminder-dispatch -> reminder.due -> notifier -> the webhook request: one trace, whose
    traceparent the user's endpoint receives."""
    assert client.put("/v1/settings", json={"webhook_url": receiver}, headers=auth()).status_code == 200
    create(client, title="Ping", due_at=iso(datetime.now(UTC) + timedelta(seconds=1)), reminders=[{"offset": "PT0S"}])
    clock.advance(seconds=1.2)
    header, trace_id, _ = traceparent()
    hdrs = {"content-type": "application/json", "traceparent": header}
    assert app.apps["reminder-dispatch"].test_client().post("/cron", data=b"", headers=hdrs).get_json()["fired"] == 1
    app.bus.drain()
    assert len(Receiver.received) == 1
    sent = {k.lower(): v for k, v in Receiver.received[0][0].items()}
    assert sent["traceparent"].split("-")[1] == trace_id
