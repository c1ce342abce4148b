"""The event, cron and invocation functions through their functions-framework apps (embedded mode),
on SQLite and PostgreSQL: Dapr's delivery contract, de-duplication, the outbox relay, reminders,
notifications and webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select, update

from taskflow import config, events
from taskflow.adapters import tables
from taskflow.service_layer import outbox
from taskflow.service_layer.ports import PublishError
from tests.conftest import Clock, auth
from tests.functions.test_tasks_api import create, iso


def structured(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}


def binary(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = "application/json"
    return json.dumps(event["data"]).encode(), headers


def task_event(task: dict[str, Any], etype: str = events.TASK_CREATED, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": etype,
        "source": "/tests",
        "subject": task["id"],
        "datacontenttype": "application/json",
        "data": {"task": task, "actor": "alice", "changes": {}},
        **extra,
    }


def history(client: Any, task_id: str, user: str = "alice") -> list[dict[str, Any]]:
    resp = client.get(f"/v1/tasks/{task_id}/history", headers=auth(user))
    assert resp.status_code == 200, resp.get_json()
    return list(resp.get_json()["items"])


def count(app: Any, table: Any, *where: Any) -> int:
    with app.root.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


# --- the delivery contract -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [structured, binary])
def test_audit_records_once_per_event_id_in_both_content_modes(client: Any, app: Any, mode: Any) -> None:
    task = create(client)
    app.bus.drain()
    event = task_event(task, events.TASK_UPDATED)
    body, headers = mode(event)
    audit = app.apps["audit"].test_client()
    for _ in range(3):  # redelivery and producer duplicates
        resp = audit.post("/events/task-events", data=body, headers=headers)
        assert resp.status_code == 200 and resp.get_json() == {"status": "SUCCESS"}
    types = [h["type"] for h in history(client, task["id"])]
    assert types == [events.TASK_CREATED, events.TASK_UPDATED]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"specversion": "1.0", "id": "1", "source": "/x", "type": "com.example.unknown.v1", "data": {}}),
        json.dumps({"specversion": "1.0", "id": "1", "source": "/x", "type": events.TASK_CREATED, "data": {"x": 1}}),
    ],
)
def test_poison_events_are_dropped_for_the_dead_letter_topic(app: Any, body: Any) -> None:
    for name, route in (("audit", "/events/task-events"), ("notifier", "/events/reminders")):
        resp = (
            app.apps[name]
            .test_client()
            .post(route, data=body, headers={"content-type": "application/cloudevents+json"})
        )
        assert resp.status_code == 200 and resp.get_json() == {"status": "DROP"}
    assert count(app, tables.audit_log) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"specversion": "1.0", "id": "1", "source": "/x", "type": events.TASK_CREATED, "data": {"x": 1}}),
    ],
)
def test_with_knative_delivery_poison_events_get_400_for_the_dead_letter_sink(make_app: Any, body: Any) -> None:
    """Knative's data-plane contract: 400 is not retried and goes to the KafkaSource's deadLetterSink;
    a 200 DROP would count as delivered there and the event would be lost."""
    app = make_app(event_delivery="knative")
    for name, route in (("audit", "/events/task-events"), ("notifier", "/events/reminders")):
        resp = (
            app.apps[name]
            .test_client()
            .post(route, data=body, headers={"content-type": "application/cloudevents+json"})
        )
        assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
        assert resp.get_json()["type"].endswith("/poison-event") and resp.get_json()["detail"]
    assert count(app, tables.audit_log) == 0 and count(app, tables.notifications) == 0


def test_event_delivery_setting_is_validated() -> None:
    with pytest.raises(RuntimeError, match="TASKFLOW_EVENT_DELIVERY"):
        config.load({"TASKFLOW_EVENT_DELIVERY": "kafka"})


def test_in_process_bus_dead_letters_a_dropped_event(app: Any) -> None:
    app.bus.publish("task-events", json.dumps({"specversion": "1.0", "id": "p1", "type": "bogus"}), "k")
    app.bus.drain()
    assert (
        "task-events-dlq",
        {"specversion": "1.0", "id": "p1", "type": "bogus", "topic": "task-events", "pubsubname": "taskflow-pubsub"},
    ) in app.bus.dead_letters


def test_database_outage_answers_non_2xx_so_dapr_retries(client: Any, app: Any) -> None:
    task = create(client)
    from taskflow.adapters import db

    app.root.use(engine=db.build_engine("postgresql+pg8000://nobody:nothing@127.0.0.1:1/none"))
    body, headers = structured(task_event(task))
    resp = app.apps["audit"].test_client().post("/events/task-events", data=body, headers=headers)
    assert resp.status_code >= 500 and resp.get_json()["status"] == "RETRY"
    tick = app.apps["event-fanout"].test_client().post("/cron", data=b"", headers={"content-type": "application/json"})
    assert tick.status_code == 503


def test_event_and_cron_routes_refuse_callers_without_the_app_token(make_app: Any) -> None:
    app = make_app(app_api_token="sidecar-only")
    body, headers = structured(task_event({"id": str(uuid.uuid4())}))
    for name, path in (
        ("audit", "/events/task-events"),
        ("event-fanout", "/cron"),
        ("reminder-dispatch", "/cron"),
        ("notifier", "/events/reminders"),
        ("recurrence", "/events/task-completed"),
    ):
        c = app.apps[name].test_client()
        assert c.post(path, data=body, headers=headers).status_code == 401, name
        assert c.get("/healthz").status_code == 200
    ok = app.apps["event-fanout"].test_client().post("/cron", headers={"dapr-api-token": "sidecar-only"})
    assert ok.status_code == 200
    assert app.apps["audit"].test_client().get(f"/history/{uuid.uuid4()}?owner=a").status_code == 401


def test_cron_routes_answer_post_with_an_empty_body_200(app: Any) -> None:
    for name in ("event-fanout", "reminder-dispatch"):
        resp = app.apps[name].test_client().post("/cron", data=b"", headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.get_data()


# --- outbox --------------------------------------------------------------------------------


class Recorder:
    """A publisher port that records what it was given (a fake of the port, not of the relay)."""

    def __init__(self, inner: Any = None, fail: bool = False, crash: bool = False) -> None:
        self.inner = inner
        self.fail = fail
        self.crash = crash  # the process dies right after the broker accepted the event
        self.sent: list[dict[str, Any]] = []

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        if self.fail:
            raise PublishError("broker down")
        self.sent.append(json.loads(event_json) | {"_topic": topic, "_key": partition_key})
        if self.inner is not None:
            self.inner.publish(topic, event_json, partition_key)
        if self.crash:
            raise RuntimeError("process killed after publishing")


def test_events_wait_in_the_outbox_while_the_broker_is_down_and_relay_with_the_same_id(client: Any, app: Any) -> None:
    down = Recorder(fail=True)
    app.root.use(publisher=down)
    task = create(client)
    client.patch(f"/v1/tasks/{task['id']}", json={"title": "renamed"}, headers=auth())
    assert count(app, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 2
    with app.root.engine.connect() as conn:
        stored = [json.loads(r[0]) for r in conn.execute(select(tables.outbox.c.event).order_by(tables.outbox.c.seq))]
    up = Recorder(inner=app.bus)
    app.root.use(publisher=up)
    resp = app.apps["event-fanout"].test_client().post("/cron", data=b"", headers={"content-type": "application/json"})
    assert resp.get_json() == {"sent": 2, "failed": 0}
    assert [e["id"] for e in up.sent] == [e["id"] for e in stored]
    assert [e["type"] for e in up.sent] == [events.TASK_CREATED, events.TASK_UPDATED]
    assert {e["_key"] for e in up.sent} == {task["id"]} and {e["subject"] for e in up.sent} == {task["id"]}
    assert up.sent[1]["data"]["changes"] == {"title": ["task", "renamed"]}
    app.bus.drain()
    assert [h["type"] for h in history(client, task["id"])] == [events.TASK_CREATED, events.TASK_UPDATED]
    assert count(app, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 0


def test_crash_between_publish_and_mark_sent_has_no_duplicate_effect(client: Any, app: Any) -> None:
    app.root.use(publisher=Recorder(fail=True))
    task = create(client)
    app.bus.on_settled = None  # as with Dapr, only the relay marks rows sent (not the consumers' answer)
    dying = Recorder(inner=app.bus, crash=True)
    with pytest.raises(RuntimeError):
        outbox.relay_outbox(app.root.uow(), dying, app.root.clock)
    up = Recorder(inner=app.bus)
    outbox.relay_outbox(app.root.uow(), up, app.root.clock)
    assert dying.sent[0]["id"] == up.sent[0]["id"]  # re-published with the same id
    app.bus.drain()
    assert len(history(client, task["id"])) == 1


def test_writes_publish_at_once_without_waiting_for_the_relay(client: Any, app: Any) -> None:
    task = create(client)
    app.bus.drain()
    assert count(app, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 0
    assert len(history(client, task["id"])) == 1


# --- reminders and notifications -----------------------------------------------------------


def tick(app: Any) -> dict[str, int]:
    resp = (
        app.apps["reminder-dispatch"]
        .test_client()
        .post("/cron", data=b"", headers={"content-type": "application/json"})
    )
    assert resp.status_code == 200
    app.bus.drain()
    return dict(resp.get_json())


def inbox(client: Any, user: str = "alice") -> list[dict[str, Any]]:
    return list(client.get("/v1/notifications", headers=auth(user)).get_json()["items"])


def test_a_due_reminder_reaches_the_inbox_once(client: Any, app: Any, clock: Clock) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1)
    task = create(client, title="Stand-up", due_at=iso(due), reminders=[{"offset": "PT0S"}])
    assert tick(app)["fired"] == 0
    clock.advance(seconds=1.2)
    assert tick(app) == {"fired": 1, "late": 0, "missed": 0}
    assert tick(app)["fired"] == 0
    items = inbox(client)
    assert len(items) == 1
    assert items[0]["task_id"] == task["id"] and items[0]["title"] == "Stand-up" and items[0]["late"] is False
    assert items[0]["fire_at"] == iso(due)
    assert inbox(client, "bob") == []


def test_no_reminder_for_completed_or_deleted_tasks_or_past_times(client: Any, app: Any, clock: Clock) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    done = create(client, due_at=iso(soon), reminders=[{"offset": "PT0S"}])
    gone = create(client, due_at=iso(soon), reminders=[{"offset": "PT0S"}])
    create(client, due_at=iso(soon + timedelta(days=1)), reminders=[{"at": iso(soon - timedelta(minutes=5))}])
    client.post(f"/v1/tasks/{done['id']}/complete", headers=auth())
    client.delete(f"/v1/tasks/{gone['id']}", headers=auth())
    clock.advance(seconds=1.2)
    assert tick(app)["fired"] == 0
    assert inbox(client) == []


def test_changing_due_re_bases_relative_reminders(client: Any, app: Any, clock: Clock) -> None:
    far = datetime.now(UTC) + timedelta(days=3)
    task = create(client, due_at=iso(far), reminders=[{"offset": "-PT15M"}])
    soon = datetime.now(UTC) + timedelta(seconds=1)
    client.patch(f"/v1/tasks/{task['id']}", json={"due_at": iso(soon + timedelta(minutes=15))}, headers=auth())
    clock.advance(seconds=1.2)
    assert tick(app)["fired"] == 1
    assert inbox(client)[0]["fire_at"] == iso(soon)


def _backdate(app: Any, task_id: str, by: timedelta) -> None:
    with app.root.engine.begin() as conn:
        conn.execute(
            update(tables.reminders).where(tables.reminders.c.task_id == task_id).values(fire_at=datetime.now(UTC) - by)
        )


def test_after_downtime_recent_reminders_fire_late_and_old_ones_are_missed(client: Any, app: Any) -> None:
    later = iso(datetime.now(UTC) + timedelta(days=2))
    recent = create(client, title="recent", due_at=later, reminders=[{"offset": "-PT1H"}])
    old = create(client, title="old", due_at=later, reminders=[{"offset": "-PT1H"}])
    _backdate(app, recent["id"], timedelta(hours=3))
    _backdate(app, old["id"], timedelta(hours=25))
    assert tick(app) == {"fired": 1, "late": 1, "missed": 1}
    items = inbox(client)
    assert [(i["title"], i["late"]) for i in items] == [("recent", True)]


def test_grace_period_follows_the_configuration_store_live(client: Any, app: Any) -> None:
    later = iso(datetime.now(UTC) + timedelta(days=2))
    task = create(client, title="late", due_at=later, reminders=[{"offset": "-PT1H"}])
    _backdate(app, task["id"], timedelta(hours=3))
    with app.root.engine.begin() as conn:  # an operator shortens the grace period to one hour
        conn.execute(tables.taskflow_config.insert().values(key="reminder_grace_seconds", value="3600", version="1"))
    assert tick(app) == {"fired": 0, "late": 0, "missed": 1}
    assert inbox(client) == []


class Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.answers = []
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_webhook_is_signed_retried_and_never_duplicates_the_inbox(
    client: Any, app: Any, receiver: str, clock: Clock
) -> None:
    assert client.put("/v1/settings", json={"webhook_url": receiver}, headers=auth()).status_code == 200
    Receiver.answers = [500, 503]  # the receiver fails twice, then accepts
    app.bus.backoff = 0.01
    soon = datetime.now(UTC) + timedelta(seconds=1)
    create(client, title="Ping", due_at=iso(soon), reminders=[{"offset": "PT0S"}])
    clock.advance(seconds=1.2)
    tick(app)
    assert len(Receiver.received) == 3
    headers, body = Receiver.received[-1]
    key = app.root.webhook_signing_key.encode()
    assert headers["X-TaskFlow-Signature"] == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert len({h["X-TaskFlow-Event-Id"] for h, _ in Receiver.received}) == 1
    payload = json.loads(body)
    items = inbox(client)
    assert len(items) == 1 and payload == items[0]
    tick(app)
    assert len(Receiver.received) == 3


def test_notifier_accepts_a_binary_reminder_event(app: Any, client: Any) -> None:
    task = create(client)
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": events.REMINDER_DUE,
        "source": "/tests",
        "subject": task["id"],
        "datacontenttype": "application/json",
        "data": {
            "reminder_id": str(uuid.uuid4()),
            "task_id": task["id"],
            "owner_id": "alice",
            "title": "binary",
            "fire_at": "2030-01-01T09:00:00Z",
            "late": False,
        },
    }
    body, headers = binary(event)
    notifier = app.apps["notifier"].test_client()
    for _ in range(2):
        assert notifier.post("/events/reminders", data=body, headers=headers).get_json() == {"status": "SUCCESS"}
    assert [n["title"] for n in inbox(client)] == ["binary"]


def test_events_queued_in_a_process_that_dies_are_relayed_after_restart(make_app: Any) -> None:
    """The in-process bus acknowledges an event only once consumed; the outbox keeps the rest."""
    first = make_app()
    first.bus.stop()  # the consumers die with events still queued
    api = first.apps["tasks-api"].test_client()
    task = create(api)
    api.patch(f"/v1/tasks/{task['id']}", json={"title": "renamed"}, headers=auth())
    assert count(first, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 2
    first.stop()

    second = make_app()
    assert second.tick("event-fanout") == {"sent": 2, "failed": 0}
    second.bus.drain()
    api = second.apps["tasks-api"].test_client()
    assert [h["type"] for h in history(api, task["id"])] == [events.TASK_CREATED, events.TASK_UPDATED]
    assert count(second, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 0
