"""Recurring tasks end to end in embedded mode: complete -> the recurrence function creates the next
occurrence through the bus, exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from taskflow import events
from tests.conftest import auth
from tests.functions.test_consumers import structured
from tests.functions.test_tasks_api import create


def series(client: Any, series_id: str) -> list[dict[str, Any]]:
    items = client.get("/v1/tasks?status=all&recurring=true&limit=200", headers=auth()).get_json()["items"]
    return sorted((t for t in items if t["series_id"] == series_id), key=lambda t: t["occurrence"])


def complete(client: Any, app: Any, task_id: str) -> dict[str, Any]:
    resp = client.post(f"/v1/tasks/{task_id}/complete", headers=auth())
    assert resp.status_code == 200
    app.bus.drain()
    return dict(resp.get_json())


def test_completing_creates_the_next_occurrence_in_the_tasks_time_zone(client: Any, app: Any) -> None:
    # Daily at 09:00 New York, due the day before DST starts (2030-03-10 is the switch).
    first = create(
        client,
        title="Water plants",
        description="balcony",
        priority="high",
        tags=["home"],
        due_at="2030-03-09T14:00:00Z",
        timezone="America/New_York",
        recurrence={"rule": "FREQ=DAILY"},
        reminders=[{"offset": "-PT30M"}, {"at": "2030-03-09T12:00:00Z"}],
    )
    assert first["series_id"] == first["id"] and first["occurrence"] == 1
    complete(client, app, first["id"])
    tasks = series(client, first["id"])
    assert [t["occurrence"] for t in tasks] == [1, 2]
    nxt = tasks[1]
    assert nxt["status"] == "open"
    assert nxt["due_at"] == "2030-03-10T13:00:00Z"  # 09:00 EDT: the wall clock is kept across DST
    assert (nxt["title"], nxt["description"], nxt["priority"], nxt["tags"], nxt["timezone"]) == (
        "Water plants",
        "balcony",
        "high",
        ["home"],
        "America/New_York",
    )
    assert nxt["recurrence"] == first["recurrence"]
    # relative reminders re-based on the new due, absolute ones shifted by the same delta (23 h)
    assert nxt["reminders"] == [{"offset": "-PT30M"}, {"at": "2030-03-10T11:00:00Z"}]
    history = client.get(f"/v1/tasks/{nxt['id']}/history", headers=auth()).get_json()["items"]
    assert [h["type"] for h in history] == [events.TASK_CREATED]


def test_duplicate_delivery_and_reopen_complete_create_one_occurrence(client: Any, app: Any) -> None:
    first = create(client, due_at="2030-01-07T09:00:00Z", recurrence={"rule": "FREQ=WEEKLY;BYDAY=MO"})
    done = complete(client, app, first["id"])
    event = {
        "specversion": "1.0",
        "id": "dup-1",
        "type": events.TASK_COMPLETED,
        "source": "/tests",
        "subject": first["id"],
        "data": {"task": done, "actor": "alice", "changes": {}},
    }
    body, headers = structured(event)
    rec = app.apps["recurrence"].test_client()
    for _ in range(2):
        assert rec.post("/events/task-completed", data=body, headers=headers).get_json() == {"status": "SUCCESS"}
    client.post(f"/v1/tasks/{first['id']}/reopen", headers=auth())
    complete(client, app, first["id"])
    tasks = series(client, first["id"])
    assert [t["occurrence"] for t in tasks] == [1, 2]
    assert tasks[1]["due_at"] == "2030-01-14T09:00:00Z"


def test_count_ends_the_series(client: Any, app: Any) -> None:
    first = create(client, due_at="2030-01-01T09:00:00Z", recurrence={"rule": "FREQ=DAILY;COUNT=2"})
    complete(client, app, first["id"])
    second = series(client, first["id"])[1]
    complete(client, app, second["id"])
    assert [t["occurrence"] for t in series(client, first["id"])] == [1, 2]


def test_deleting_an_occurrence_ends_the_series(client: Any, app: Any) -> None:
    first = create(client, due_at="2030-01-01T09:00:00Z", recurrence={"rule": "FREQ=DAILY"})
    done = complete(client, app, first["id"])
    second = series(client, first["id"])[1]
    client.delete(f"/v1/tasks/{second['id']}", headers=auth())
    # a late redelivery of occurrence 1's completion must not resurrect occurrence 2
    body, headers = structured(
        {
            "specversion": "1.0",
            "id": "late-1",
            "type": events.TASK_COMPLETED,
            "source": "/tests",
            "subject": first["id"],
            "data": {"task": done, "actor": "alice", "changes": {}},
        }
    )
    app.apps["recurrence"].test_client().post("/events/task-completed", data=body, headers=headers)
    assert [t["occurrence"] for t in series(client, first["id"])] == [1]


def test_anchor_due_skips_missed_instances(client: Any, app: Any) -> None:
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10, hours=1)
    first = create(client, due_at=past.isoformat().replace("+00:00", "Z"), recurrence={"rule": "FREQ=DAILY"})
    complete(client, app, first["id"])
    nxt = series(client, first["id"])[1]
    due = datetime.fromisoformat(nxt["due_at"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now < due <= now + timedelta(days=1)  # no pile-up of ten overdue copies


def test_recurrence_ignores_other_event_types(app: Any) -> None:
    body, headers = structured(
        {
            "specversion": "1.0",
            "id": "x",
            "type": events.TASK_CREATED,
            "source": "/t",
            "subject": "s",
            "data": json.loads(json.dumps({"task": {}, "actor": "a"})),
        }
    )
    resp = app.apps["recurrence"].test_client().post("/events/task-completed", data=body, headers=headers)
    assert resp.get_json() in ({"status": "SUCCESS"}, {"status": "DROP"})
