"""POST /v1/imports: iCalendar VTODOs in the shapes Tasks.org, Thunderbird and Apple Reminders
write become tasks; a UID seen before updates; bad items are reported and never stop the others.
Through tasks-api's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import auth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ical"
ICS = {"Content-Type": "text/calendar; charset=utf-8"}


def post_ics(client: Any, body: bytes, user: str = "alice") -> Any:
    return client.post("/v1/imports", data=body, headers={**auth(user), **ICS})


def tasks_by_title(client: Any, user: str = "alice") -> dict[str, dict[str, Any]]:
    resp = client.get("/v1/tasks?status=all&limit=200", headers=auth(user))
    return {t["title"]: t for t in resp.get_json()["items"]}


def history(app: Any, client: Any, task_id: str, user: str = "alice") -> list[dict[str, Any]]:
    app.bus.drain(10)
    return client.get(f"/v1/tasks/{task_id}/history", headers=auth(user)).get_json()["items"]


def test_tasks_org_shape(app: Any, client: Any) -> None:
    resp = post_ics(client, (FIXTURES / "tasks_org.ics").read_bytes())
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"created": 2, "updated": 0, "unchanged": 0, "skipped": []}
    tasks = tasks_by_title(client)
    milk = tasks["Buy milk"]
    assert milk["description"] == "Semi-skimmed, two bottles"
    assert milk["priority"] == "low"
    assert milk["tags"] == ["groceries", "home"]
    assert milk["timezone"] == "Europe/Berlin"
    assert milk["due_at"] == "2030-01-15T17:00:00Z"  # 18:00 CET
    assert milk["recurrence"] == {"rule": "FREQ=WEEKLY;COUNT=10", "anchor": "due"}
    assert milk["reminders"] == [{"offset": "P0D"}, {"offset": "-PT1H"}]
    plants = tasks["Water the plants"]
    assert plants["status"] == "completed"
    assert plants["completed_at"] == "2026-01-10T09:00:00Z"
    assert plants["priority"] == "urgent"
    assert plants["due_at"] == "2026-01-10T00:00:00Z"  # a whole day: its start (UTC, no calendar zone)


def test_thunderbird_shape_with_an_unsupported_rule(app: Any, client: Any) -> None:
    resp = post_ics(client, (FIXTURES / "thunderbird.ics").read_bytes())
    body = resp.get_json()
    assert (body["created"], body["updated"]) == (2, 0)
    assert len(body["skipped"]) == 1
    skipped = body["skipped"][0]
    assert skipped["uid"] == "a4d1b0f6-4a53-4c0b-9d26-1c4b4c1d2e3f"
    assert "HOURLY" in skipped["reason"]
    tasks = tasks_by_title(client)
    assert "Check the server every hour" not in tasks
    report = tasks["Quarterly report"]
    assert report["status"] == "open"  # IN-PROCESS
    assert report["priority"] == "urgent"
    assert report["timezone"] == "America/New_York"
    assert report["due_at"] == "2030-03-01T22:00:00Z"
    assert report["description"] == "Collect the figures\nSend them to finance"
    assert report["recurrence"]["rule"] == "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=1"
    # TRIGGER:-PT15M is relative to DTSTART (09:00), 8 h 15 min before DUE (17:00).
    assert report["reminders"] == [{"offset": "-PT8H15M"}]
    bank = tasks["Call the bank"]
    assert (bank["priority"], bank["due_at"], bank["tags"]) == ("medium", None, [])


def test_apple_reminders_shape(app: Any, client: Any) -> None:
    resp = post_ics(client, (FIXTURES / "apple_reminders.ics").read_bytes())
    body = resp.get_json()
    assert (body["created"], body["updated"]) == (2, 0)
    assert body["skipped"] == [{"uid": "D0E1F2A3-B4C5-4D6E-8F70-81A2B3C4D5E6", "reason": "the VTODO has no SUMMARY"}]
    tasks = tasks_by_title(client)
    mom = tasks["Call mom"]
    assert mom["timezone"] == "America/Los_Angeles"
    assert mom["due_at"] == "2030-01-07T18:00:00Z"
    assert mom["reminders"] == [{"at": "2030-01-07T17:45:00Z"}]  # ACTION:NONE placeholder ignored
    passport = tasks["Renew passport"]
    assert passport["recurrence"] == {"rule": "FREQ=YEARLY", "anchor": "due"}
    assert passport["priority"] == "urgent"


def test_reimporting_the_same_file_changes_nothing(app: Any, client: Any) -> None:
    body = (FIXTURES / "thunderbird.ics").read_bytes()
    post_ics(client, body)
    before = tasks_by_title(client)
    again = post_ics(client, body).get_json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    after = tasks_by_title(client)
    assert after == before  # same ids, same versions
    report = before["Quarterly report"]
    assert [e["type"] for e in history(app, client, report["id"])] == ["com.taskflow.task.created.v1"]


def test_a_changed_item_updates_its_task(app: Any, client: Any) -> None:
    body = (FIXTURES / "thunderbird.ics").read_bytes()
    post_ics(client, body)
    first = tasks_by_title(client)["Call the bank"]
    changed = body.replace(b"SUMMARY:Call the bank", b"SUMMARY:Call the bank about the loan").replace(
        b"X-MOZ-LASTACK:20260105T091500Z", b"STATUS:COMPLETED\r\nCOMPLETED:20260106T080000Z"
    )
    changed = changed.replace(b"STATUS:NEEDS-ACTION\r\nSTATUS:COMPLETED", b"STATUS:COMPLETED")
    result = post_ics(client, changed).get_json()
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 1, 1)
    now = tasks_by_title(client)["Call the bank about the loan"]
    assert now["id"] == first["id"]
    assert now["status"] == "completed"
    assert now["version"] > first["version"]
    types = [e["type"] for e in history(app, client, now["id"])]
    assert types == [
        "com.taskflow.task.created.v1",
        "com.taskflow.task.updated.v1",
        "com.taskflow.task.completed.v1",
    ]


def test_uids_are_per_user(app: Any, client: Any) -> None:
    body = (FIXTURES / "apple_reminders.ics").read_bytes()
    post_ics(client, body, "alice")
    bob = post_ics(client, body, "bob").get_json()
    assert bob["created"] == 2  # bob's own copies, not alice's tasks
    alice_ids = {t["id"] for t in tasks_by_title(client, "alice").values()}
    bob_ids = {t["id"] for t in tasks_by_title(client, "bob").values()}
    assert alice_ids.isdisjoint(bob_ids)


def test_broken_items_are_reported_and_the_rest_imported(app: Any, client: Any) -> None:
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        "BEGIN:VTODO\r\nUID:ok-1\r\nSUMMARY:Fine\r\nDUE:20300101T100000Z\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:bad-due\r\nSUMMARY:Broken due\r\nDUE:not-a-date\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nSUMMARY:No uid\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:bad-tz\r\nSUMMARY:Bad zone\r\nDUE;TZID=Mars/Olympus:20300101T100000\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:rule-no-due\r\nSUMMARY:Rule\r\nRRULE:FREQ=DAILY\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:too-long\r\nSUMMARY:" + "x" * 201 + "\r\nEND:VTODO\r\n"
        "BEGIN:VTODO\r\nUID:ok-2\r\nSUMMARY:Also fine\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n"
    ).encode()
    result = post_ics(client, body).get_json()
    assert result["created"] >= 2
    skipped = {s["uid"]: s["reason"] for s in result["skipped"]}
    assert {"bad-due", None, "rule-no-due", "too-long"} <= set(skipped)
    assert "RRULE" in skipped["rule-no-due"]
    assert "200" in skipped["too-long"]
    titles = set(tasks_by_title(client))
    assert {"Fine", "Also fine"} <= titles
    assert not titles & {"Broken due", "No uid", "Rule"}


def test_bad_requests_write_nothing(client: Any) -> None:
    not_ics = client.post("/v1/imports", json={"a": 1}, headers=auth())
    assert not_ics.status_code == 415
    assert not_ics.mimetype == "application/problem+json"
    garbage = post_ics(client, b"this is not a calendar")
    assert garbage.status_code == 400
    assert garbage.mimetype == "application/problem+json"
    empty = post_ics(client, b"")
    assert empty.status_code == 400
    huge = post_ics(client, b"BEGIN:VCALENDAR\r\n" + b"X" * (5 * 1024 * 1024))
    assert huge.status_code == 413
    unauth = client.post("/v1/imports", data=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", headers=ICS)
    assert unauth.status_code == 401
    assert tasks_by_title(client) == {}


SAMPLE = [
    {
        "title": "Water the plants",
        "description": "Balcony first",
        "priority": "high",
        "tags": ["home", "garden"],
        "due_at": "2030-03-09T19:00:00Z",
        "timezone": "America/New_York",
        "recurrence": {"rule": "FREQ=DAILY;INTERVAL=2", "anchor": "due"},
        "reminders": [{"offset": "-PT15M"}, {"at": "2030-03-09T12:00:00Z"}],
    },
    {
        "title": "Pay rent",
        "priority": "urgent",
        "due_at": "2030-04-01T08:00:00Z",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=MONTHLY;BYMONTHDAY=-1", "anchor": "completion"},
    },
    {"title": "Someday", "tags": ["ideas"]},
]
COMPARED = ("title", "description", "priority", "tags", "due_at", "timezone", "recurrence", "reminders", "status")


def test_round_trip_to_another_user(app: Any, client: Any) -> None:
    from taskflow.service_layer import exports

    for fields in SAMPLE:
        assert client.post("/v1/tasks", json=fields, headers=auth("alice")).status_code == 201
    rent = tasks_by_title(client)["Pay rent"]
    client.post(f"/v1/tasks/{rent['id']}/complete", headers=auth("alice"))
    app.bus.drain(10)  # the recurrence function creates the next "Pay rent"
    alice = client.get("/v1/tasks?status=all&limit=200", headers=auth("alice")).get_json()["items"]
    assert len(alice) == 4

    data = exports.build_ics(app.root.uow(), app.root.clock, "alice")
    result = post_ics(client, data, "bob").get_json()
    assert (result["created"], result["skipped"]) == (4, [])
    app.bus.drain(10)
    bob = client.get("/v1/tasks?status=all&limit=200", headers=auth("bob")).get_json()["items"]

    def shape(tasks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(tuple(repr(t[k]) for k in COMPARED) for t in tasks)

    assert shape(bob) == shape(alice)  # importing a completed occurrence creates no extra one
    assert not {t["id"] for t in alice} & {t["id"] for t in bob}
    again = post_ics(client, data, "bob").get_json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)

    # the series survives (RELATED-TO + X-TASKFLOW-OCCURRENCE): one series, occurrences 1 and 2
    def series(tasks: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
        rents = [t for t in tasks if t["title"] == "Pay rent"]
        assert len({t["series_id"] for t in rents}) == 1
        return sorted((t["occurrence"], t["status"], t["due_at"]) for t in rents)

    assert series(bob) == series(alice)
    assert [(o, status) for o, status, _ in series(bob)] == [(1, "completed"), (2, "open")]
    bob_series = {t["series_id"] for t in bob if t["title"] == "Pay rent"}
    assert not bob_series & {t["series_id"] for t in alice}  # bob's own series, not alice's
    # completing bob's open occurrence continues his series exactly as alice's would continue
    for user in ("alice", "bob"):
        open_rent = next(t for t in tasks_by_user(client, user) if t["title"] == "Pay rent" and t["status"] == "open")
        assert client.post(f"/v1/tasks/{open_rent['id']}/complete", headers=auth(user)).status_code == 200
    app.bus.drain(10)
    assert series(tasks_by_user(client, "bob")) == series(tasks_by_user(client, "alice"))
    assert [o for o, *_ in series(tasks_by_user(client, "bob"))] == [1, 2, 3]


def tasks_by_user(client: Any, user: str) -> list[dict[str, Any]]:
    return list(client.get("/v1/tasks?status=all&limit=200", headers=auth(user)).get_json()["items"])


def test_later_occurrences_join_their_series_and_subtask_relations_are_ignored(app: Any, client: Any) -> None:
    """A file from elsewhere: later occurrences name the first by RELATED-TO;RELTYPE=SIBLING without
    TaskFlow's occurrence numbers (numbered by due time), listed before it; a subtask's RELATED-TO
    (RELTYPE=PARENT, the default) is not a series."""
    body = (FIXTURES / "series_from_elsewhere.ics").read_bytes()
    result = post_ics(client, body).get_json()
    assert (result["created"], result["skipped"]) == (4, [])
    tasks = tasks_by_user(client, "alice")
    standups = sorted((t["due_at"], t["occurrence"], t["series_id"]) for t in tasks if t["title"] == "Standup")
    assert [o for _, o, _ in standups] == [1, 2, 3] and len({s for *_, s in standups}) == 1
    first = next(t for t in tasks if t["title"] == "Standup" and t["occurrence"] == 1)
    assert standups[0][2] == first["id"]
    child = next(t for t in tasks if t["title"] == "Subtask")
    assert (child["series_id"], child["occurrence"]) == (child["id"], 1)  # a series of its own
    again = post_ics(client, body).get_json()
    assert (again["created"], again["unchanged"]) == (0, 4)


def test_openapi_documents_the_import(client: Any) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/v1/openapi.json").get_json()
    validate(doc)
    op = doc["paths"]["/v1/imports"]["post"]
    assert "text/calendar" in op["requestBody"]["content"]
    assert set(op["responses"]) >= {"200", "400", "401", "413", "415"}
    assert "ImportReport" in doc["components"]["schemas"]
