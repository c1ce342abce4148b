"""Dapr bulk delivery (``bulkSubscribe`` in audit's Subscription), as daprd and the in-process bus
send it: one POST with many CloudEvents, answered per entry; audit records a batch in one
transaction, once per event id, and a poison entry is dropped without failing the others."""

from __future__ import annotations

import json
import uuid
from typing import Any

from taskflow import events
from taskflow.adapters import tables
from tests.conftest import auth
from tests.functions.test_consumers import count, history, task_event
from tests.functions.test_statement_counts import counting
from tests.functions.test_tasks_api import create


def bulk(*event_objects: Any) -> tuple[dict[str, Any], list[str]]:
    ids = [str(uuid.uuid4()) for _ in event_objects]
    body = {
        "id": str(uuid.uuid4()),
        "entries": [
            {"entryId": i, "event": e, "contentType": "application/cloudevents+json", "metadata": {}}
            for i, e in zip(ids, event_objects, strict=True)
        ],
        "metadata": {"pubsubName": "taskflow-pubsub"},
        "pubsubname": "taskflow-pubsub",
        "topic": "task-events",
        "type": "com.dapr.event.sent.bulk",
    }
    return body, ids


def test_audit_records_a_bulk_delivery_once_per_event_in_one_transaction(client: Any, app: Any) -> None:
    tasks = [create(client, title=f"t{i}") for i in range(5)]
    app.bus.drain()
    evs = [task_event(t, events.TASK_UPDATED) for t in tasks]
    poison = {"specversion": "1.0", "id": "p-1", "type": events.TASK_UPDATED, "source": "/t", "data": {"x": 1}}
    body, entry_ids = bulk(*evs, poison, evs[0])  # the last one repeats the first: a redelivery
    audit = app.apps["audit"].test_client()

    with counting(app.root.engine) as work:
        resp = audit.post("/events/task-events", data=json.dumps(body), headers={"content-type": "application/json"})
    assert resp.status_code == 200
    statuses = {s["entryId"]: s["status"] for s in resp.get_json()["statuses"]}
    assert statuses == {**dict.fromkeys(entry_ids, "SUCCESS"), entry_ids[5]: "DROP"}
    assert work.statements == ["SELECT", "INSERT"]  # the tasks' owners, then every row in one insert
    assert work.transactions == 1

    for t in tasks:
        assert [h["type"] for h in history(client, t["id"])] == [events.TASK_CREATED, events.TASK_UPDATED]
    assert count(app, tables.audit_log) == 10

    again = audit.post("/events/task-events", data=json.dumps(body), headers={"content-type": "application/json"})
    assert {s["status"] for s in again.get_json()["statuses"]} == {"SUCCESS", "DROP"}
    assert count(app, tables.audit_log) == 10  # a redelivered bulk records nothing twice


def test_the_in_process_bus_delivers_audit_in_bulk_and_marks_the_outbox_once_per_batch(client: Any, app: Any) -> None:
    assert next(s for s in app.bus.subscriptions if s.app_id == "audit").bulk_max == 100
    ids = [create(client, title=f"bulk {i}", tags=["x"])["id"] for i in range(20)]
    app.bus.drain()
    for task_id in ids:
        assert [h["type"] for h in history(client, task_id)] == [events.TASK_CREATED]
    assert count(app, tables.outbox, tables.outbox.c.sent_at.is_(None)) == 0
    resp = client.get("/v1/tasks?limit=1", headers=auth())
    assert resp.status_code == 200
