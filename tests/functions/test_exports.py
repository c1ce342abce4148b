"""Asynchronous exports in embedded mode: POST /v1/exports -> 202, the exports function writes the
file through the object store (a local folder), GET /v1/exports/{id} -> ready with a signed URL
that tasks-api serves until it expires; other users see 404; exports are deleted after 7 days."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from icalendar import Calendar

from tests.conftest import auth

ICS = {"Content-Type": "text/calendar"}


def export(app: Any, client: Any, fmt: str, user: str = "alice") -> dict[str, Any]:
    resp = client.post("/v1/exports", json={"format": fmt}, headers=auth(user))
    assert resp.status_code == 202, resp.get_json()
    assert resp.headers["Location"] == f"/v1/exports/{resp.get_json()['id']}"
    assert resp.get_json()["status"] in ("pending", "ready")  # the bus may be done already
    app.bus.drain(10)
    status = client.get(resp.headers["Location"], headers=auth(user))
    assert status.status_code == 200, status.get_json()
    return dict(status.get_json())


def download(client: Any, url: str) -> Any:
    parts = urlsplit(url)
    return client.get(parts.path, query_string=parts.query)


def _sample(client: Any, user: str = "alice") -> list[dict[str, Any]]:
    bodies = [
        {
            "title": "Water the plants",
            "priority": "high",
            "tags": ["home"],
            "due_at": "2030-03-09T19:00:00Z",
            "timezone": "America/New_York",
            "recurrence": {"rule": "FREQ=DAILY", "anchor": "due"},
            "reminders": [{"offset": "-PT15M"}],
        },
        {"title": "Someday", "description": "maybe"},
    ]
    out = []
    for body in bodies:
        resp = client.post("/v1/tasks", json=body, headers=auth(user))
        assert resp.status_code == 201
        out.append(resp.get_json())
    return out


def test_ics_export_round_trips_to_another_user(app: Any, client: Any) -> None:
    tasks = _sample(client)
    client.post(f"/v1/tasks/{tasks[0]['id']}/complete", headers=auth())
    app.bus.drain(10)  # the recurrence function creates the next occurrence
    done = export(app, client, "ics")
    assert done["status"] == "ready"
    assert done["download_url"].startswith("http://localhost/v1/downloads/")
    resp = download(client, done["download_url"])
    assert resp.status_code == 200
    assert resp.mimetype == "text/calendar"
    assert "attachment" in resp.headers["Content-Disposition"]
    cal = Calendar.from_ical(resp.get_data())
    assert sorted(str(t["summary"]) for t in cal.walk("VTODO")) == ["Someday", "Water the plants", "Water the plants"]

    imported = client.post("/v1/imports", data=resp.get_data(), headers={**auth("bob"), **ICS}).get_json()
    assert (imported["created"], imported["skipped"]) == (3, [])
    app.bus.drain(10)
    fields = ("title", "description", "priority", "tags", "due_at", "timezone", "recurrence", "reminders", "status")

    def shape(user: str) -> list[tuple[str, ...]]:
        items = client.get("/v1/tasks?status=all", headers=auth(user)).get_json()["items"]
        return sorted(tuple(repr(t[f]) for f in fields) for t in items)

    assert shape("bob") == shape("alice")


def test_json_export_holds_tasks_history_settings(app: Any, client: Any) -> None:
    tasks = _sample(client)
    client.patch(f"/v1/tasks/{tasks[1]['id']}", json={"title": "Someday soon"}, headers=auth())
    assert (
        client.put("/v1/settings", json={"webhook_url": "http://127.0.0.1:9/hook"}, headers=auth()).status_code == 200
    )
    client.delete(f"/v1/tasks/{tasks[0]['id']}", headers=auth())
    app.bus.drain(10)
    done = export(app, client, "json")
    doc = json.loads(download(client, done["download_url"]).get_data())
    assert doc["version"] == 1 and doc["user"] == "alice"
    assert [t["title"] for t in doc["tasks"]] == ["Someday soon"]
    assert doc["settings"] == {"webhook_url": "http://127.0.0.1:9/hook"}
    kinds = sorted((e["task_id"] == tasks[0]["id"], e["type"].split(".")[3]) for e in doc["history"])
    assert kinds == [(False, "created"), (False, "updated"), (True, "created"), (True, "deleted")]
    assert all(e["archived"] is False for e in doc["history"])
    assert doc["notifications"] == []


def test_exports_and_downloads_are_per_user(app: Any, client: Any) -> None:
    _sample(client)
    done = export(app, client, "json")
    other = client.get(f"/v1/exports/{done['id']}", headers=auth("mallory"))
    assert other.status_code == 404
    assert other.mimetype == "application/problem+json"
    url = urlsplit(done["download_url"])
    query = parse_qs(url.query)
    forged_key = url.path.replace("/exports/", "/exports/x", 1)
    assert client.get(forged_key, query_string=url.query).status_code == 403
    tampered = {**{k: v[0] for k, v in query.items()}, "filename": "other.json"}
    assert client.get(url.path, query_string=tampered).status_code == 403
    assert client.get(url.path).status_code == 403
    odd = {"filename": "x\u00e9", "expires": "9" * 30, "signature": "\u00e9\u00e9"}
    assert client.get(url.path, query_string=odd).status_code == 403
    mallory = export(app, client, "json", "mallory")
    doc = json.loads(download(client, mallory["download_url"]).get_data())
    assert doc["tasks"] == [] and doc["history"] == []


def test_download_links_expire_and_exports_are_deleted_after_a_week(
    app: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    _sample(client)
    done = export(app, client, "ics")
    files = [p for p in (tmp_path / "exports").rglob("*") if p.is_file()]
    assert len(files) == 1
    clock.advance(minutes=16)
    assert download(client, done["download_url"]).status_code == 403
    fresh = client.get(f"/v1/exports/{done['id']}", headers=auth()).get_json()
    assert download(client, fresh["download_url"]).status_code == 200
    clock.advance(days=7)
    assert client.get(f"/v1/exports/{done['id']}", headers=auth()).status_code == 404
    assert app.tick("exports")["purged"] == 1
    assert [p for p in (tmp_path / "exports").rglob("*") if p.is_file()] == []


def test_bad_export_requests_write_nothing(app: Any, client: Any) -> None:
    for body in ({"format": "pdf"}, {}, {"format": "ics", "extra": 1}):
        resp = client.post("/v1/exports", json=body, headers=auth())
        assert resp.status_code == 422
        assert resp.mimetype == "application/problem+json"
    assert client.get("/v1/exports/not-an-id", headers=auth()).status_code == 404
    assert client.post("/v1/exports", json={"format": "ics"}).status_code == 401


class StoreThatNeverAnswers:
    """The object store port when S3 does not answer: each write ends in the client's deadline (the
    Dapr SDK's, DAPR_API_TIMEOUT_SECONDS), after ``writes_first`` has (or has not) stored the object."""

    def __init__(self, inner: Any, writes_first: bool = False) -> None:
        self.inner, self.writes_first, self.attempts = inner, writes_first, 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.attempts += 1
        if self.writes_first:  # the upload landed, the answer (and so the commit) never came
            self.inner.put(key, data, content_type)
        raise TimeoutError("Deadline Exceeded")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _files(tmp_path: Path) -> list[str]:
    root = tmp_path / "exports"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_an_export_whose_object_store_never_answers_fails_with_a_reason_in_bounded_time(
    app: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    _sample(client)
    store = StoreThatNeverAnswers(app.root.object_store)
    app.root.use(object_store=store)
    app.bus.max_attempts, app.bus.backoff = 3, 0.01  # delivery gives up (dead letter) quickly
    pending = export(app, client, "ics")
    assert pending["status"] == "pending" and store.attempts == 3
    assert app.tick("exports")["failed"] == 0  # not yet ten minutes
    assert client.get(f"/v1/exports/{pending['id']}", headers=auth()).get_json()["status"] == "pending"
    clock.advance(minutes=10, seconds=1)
    assert app.tick("exports")["failed"] == 1
    failed = client.get(f"/v1/exports/{pending['id']}", headers=auth()).get_json()
    assert failed["status"] == "failed" and "download_url" not in failed
    assert "did not accept the export within 10 minutes" in failed["reason"]
    assert app.tick("exports")["failed"] == 0  # settled once
    # a redelivery after the limit does not try forever either: the export fails at once
    app.bus.max_attempts = 8
    late = export(app, client, "json")
    assert late["status"] == "pending"
    clock.advance(minutes=11)
    from taskflow import events
    from taskflow.service_layer import exports as user_exports

    data = events.ExportRequestedData(export_id=late["id"], owner_id="alice", format="json")  # type: ignore[arg-type]
    received = events.Received("redelivered", events.EXPORT_REQUESTED, late["id"], data)
    assert user_exports.run_export(app.root.uow(), clock, store, received) == "failed"
    assert client.get(f"/v1/exports/{late['id']}", headers=auth()).get_json()["status"] == "failed"


def test_objects_of_no_ready_export_are_swept_and_ready_ones_kept(
    app: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    _sample(client)
    kept = export(app, client, "ics")
    assert kept["status"] == "ready"
    # a crash between the upload and the commit: the object is there, the export never became ready
    app.root.use(object_store=StoreThatNeverAnswers(app.root.object_store, writes_first=True))
    app.bus.max_attempts, app.bus.backoff = 2, 0.01
    crashed = export(app, client, "json")
    assert crashed["status"] == "pending"
    app.root.use(object_store=app.root.object_store.inner)
    stray = "exports/" + "0" * 32 + "/not-an-export/taskflow-tasks.ics"  # no export row at all
    app.root.object_store.put(stray, b"BEGIN:VCALENDAR", "text/calendar")
    assert len(_files(tmp_path)) == 3
    clock.advance(minutes=11)
    assert app.tick("exports") == {"failed": 1, "purged": 0, "orphans_deleted": 0}  # too fresh to sweep
    clock.advance(hours=1)
    assert app.tick("exports")["orphans_deleted"] == 2
    [left] = _files(tmp_path)
    assert kept["id"] in left
    again = client.get(f"/v1/exports/{kept['id']}", headers=auth()).get_json()
    assert download(client, again["download_url"]).status_code == 200
    assert app.tick("exports")["orphans_deleted"] == 0
