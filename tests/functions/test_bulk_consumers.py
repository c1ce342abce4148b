"""Bulk deliveries to recurrence and notifier (Dapr ``bulkSubscribe``): a batch is applied in one
transaction of multi-row inserts, each effect exactly once however often an event is delivered, and
a failed webhook redelivers only its own event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from taskflow import events
from taskflow.adapters import tables
from taskflow.api.consumers import PROBE_TYPE
from tests.conftest import auth
from tests.functions.test_bulk_delivery import bulk
from tests.functions.test_consumers import (  # noqa: F401 (receiver: a fixture)
    Receiver,
    binary,
    count,
    inbox,
    receiver,
    structured,
    task_event,
)
from tests.functions.test_recurrence_flow import series
from tests.functions.test_statement_counts import counting
from tests.functions.test_tasks_api import create, iso

JSON = {"content-type": "application/json"}


def completed(task: dict[str, Any]) -> dict[str, Any]:
    """The ``task.completed`` event of ``task`` as its writer would publish it."""
    done = dict(task, status="completed", completed_at=iso(datetime.now(UTC)))
    return task_event(done, events.TASK_COMPLETED)


def statuses(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.get_data()
    return [s["status"] for s in resp.get_json()["statuses"]]


def test_recurrence_creates_a_batch_of_next_occurrences_once_in_one_transaction(client: Any, app: Any) -> None:
    due = "2030-01-07T09:00:00Z"
    firsts = [
        create(client, title="weekly", due_at=due, recurrence={"rule": "FREQ=WEEKLY"}, tags=["home"]),
        create(client, title="daily", due_at=due, recurrence={"rule": "FREQ=DAILY"}, reminders=[{"offset": "-PT1H"}]),
        create(client, title="monthly", due_at=due, recurrence={"rule": "FREQ=MONTHLY"}),
    ]
    plain = create(client, title="once", due_at=due)
    app.bus.drain()
    evs = [completed(t) for t in firsts]
    body, _ = bulk(*evs, completed(plain), evs[0])  # the last entry repeats the first: a redelivery
    rec = app.apps["recurrence"].test_client()

    with counting(app.root.engine) as work:
        resp = rec.post("/events/task-completed", data=json.dumps(body), headers=JSON)
    assert statuses(resp) == ["SUCCESS"] * 5
    # the completed tasks, then one insert each for the occurrences, their tags, reminders, events
    assert work.statements == ["SELECT"] + ["INSERT"] * 4
    assert work.transactions == 1
    app.bus.drain()

    nexts = [series(client, t["id"]) for t in firsts]
    assert [[t["occurrence"] for t in s] for s in nexts] == [[1, 2]] * 3
    assert [s[1]["due_at"] for s in nexts] == ["2030-01-14T09:00:00Z", "2030-01-08T09:00:00Z", "2030-02-07T09:00:00Z"]
    assert nexts[0][1]["tags"] == ["home"] and nexts[1][1]["reminders"] == [{"offset": "-PT1H"}]
    assert count(app, tables.reminders, tables.reminders.c.task_id == nexts[1][1]["id"]) == 1
    history = client.get(f"/v1/tasks/{nexts[2][1]['id']}/history", headers=auth()).get_json()["items"]
    assert [h["type"] for h in history] == [events.TASK_CREATED]  # its event went out once

    again, _ = bulk(*evs)
    assert statuses(rec.post("/events/task-completed", data=json.dumps(again), headers=JSON)) == ["SUCCESS"] * 3
    assert [len(series(client, t["id"])) for t in firsts] == [2, 2, 2]  # delivered again: nothing more
    assert count(app, tables.tasks) == 7


def test_recurrence_in_bulk_skips_deleted_occurrences(client: Any, app: Any) -> None:
    first = create(client, due_at="2030-01-01T09:00:00Z", recurrence={"rule": "FREQ=DAILY"})
    app.bus.drain()
    assert client.delete(f"/v1/tasks/{first['id']}", headers=auth()).status_code == 204
    body, _ = bulk(completed(first))
    resp = app.apps["recurrence"].test_client().post("/events/task-completed", data=json.dumps(body), headers=JSON)
    assert statuses(resp) == ["SUCCESS"]
    assert count(app, tables.tasks, tables.tasks.c.series_id == first["id"]) == 1


def reminder_due(task_id: str, title: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": events.REMINDER_DUE,
        "source": "/tests",
        "subject": task_id,
        "datacontenttype": "application/json",
        "data": {
            "reminder_id": str(uuid.uuid4()),
            "task_id": task_id,
            "owner_id": "alice",
            "title": title,
            "fire_at": iso(datetime.now(UTC) - timedelta(minutes=1)),
            "late": False,
        },
    }


def test_notifier_writes_a_batch_once_and_redelivers_only_a_failed_webhook(
    client: Any,
    app: Any,
    receiver: str,  # noqa: F811 (the fixture imported above)
) -> None:
    assert client.put("/v1/settings", json={"webhook_url": receiver}, headers=auth()).status_code == 200
    task = create(client, title="Call mum")
    evs = [reminder_due(task["id"], f"r{i}") for i in range(3)]
    body, _ = bulk(*evs, evs[1])  # the last entry repeats the second
    body["topic"] = "reminders"
    Receiver.answers = [204, 500]  # the second webhook fails once
    notifier = app.apps["notifier"].test_client()

    with counting(app.root.engine) as work:
        resp = notifier.post("/events/reminders", data=json.dumps(body), headers=JSON)
    assert statuses(resp) == ["SUCCESS", "RETRY", "SUCCESS", "RETRY"]
    # the inbox rows in one insert, the users' webhook URLs; the webhooks' outcomes, one UPDATE per outcome
    assert work.statements == ["INSERT", "SELECT", "UPDATE", "UPDATE"]
    assert work.transactions == 2
    assert sorted(n["title"] for n in inbox(client)) == ["r0", "r1", "r2"]
    assert [json.loads(b)["title"] for _, b in Receiver.received] == ["r0", "r1", "r2"]

    retry, _ = bulk(evs[1])  # Dapr redelivers the entry that asked for it
    retry["topic"] = "reminders"
    assert statuses(notifier.post("/events/reminders", data=json.dumps(retry), headers=JSON)) == ["SUCCESS"]
    assert [json.loads(b)["title"] for _, b in Receiver.received] == ["r0", "r1", "r2", "r1"]
    assert len({h["X-TaskFlow-Event-Id"] for h, _ in Receiver.received}) == 3
    assert sorted(n["title"] for n in inbox(client)) == ["r0", "r1", "r2"]  # never a second inbox entry

    body, _ = bulk(*evs)
    body["topic"] = "reminders"
    assert statuses(notifier.post("/events/reminders", data=json.dumps(body), headers=JSON)) == ["SUCCESS"] * 3
    assert len(Receiver.received) == 4  # all delivered already: no webhook sent again


def test_the_stacks_readiness_probe_is_answered_success_and_leaves_no_trace(client: Any, app: Any) -> None:
    probe = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": PROBE_TYPE, "source": "/taskflow/stack", "data": {}}
    routes = {"audit": "/events/task-events", "recurrence": "/events/task-completed", "notifier": "/events/reminders"}
    for app_id, route in routes.items():
        consumer = app.apps[app_id].test_client()
        body, headers = structured(probe)
        assert consumer.post(route, data=body, headers=headers).get_json() == {"status": "SUCCESS"}
        body, headers = binary(probe)
        assert consumer.post(route, data=body, headers=headers).get_json() == {"status": "SUCCESS"}
        bulk_body, _ = bulk(probe)
        assert statuses(consumer.post(route, data=json.dumps(bulk_body), headers=JSON)) == ["SUCCESS"]
    assert count(app, tables.audit_log) == count(app, tables.notifications) == count(app, tables.tasks) == 0
    assert app.bus.dead_letters == []
