"""The limits that protect the service (docs/limits.md): each one a user can hit answers with a
problem+json that names it, writes nothing, and is stated in the OpenAPI document and the docs;
outgoing calls give up after their timeout instead of hanging a request or a delivery."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from taskflow.adapters import tables
from taskflow.adapters.webhooks import DirectWebhookSender
from taskflow.api import auth as api_auth
from taskflow.api.openapi import document
from taskflow.domain import limits
from tests.conftest import auth
from tests.functions.test_consumers import structured
from tests.hostile.test_webhook_ssrf import reminder_event

ROOT = Path(__file__).resolve().parents[2]

#: Most limits live above the database: SQLite is enough (the quota tests run on PostgreSQL too).
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _writes(app: Any) -> dict[str, int]:
    with app.root.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (tables.tasks, tables.task_tags, tables.reminders, tables.outbox)
        }


def _assert_limit(resp: Any, status: int, limit: limits.Limit, maximum: int | None = None) -> None:
    assert resp.status_code == status, resp.get_data()[:300]
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["limit"] == {"name": limit.name, "max": maximum or limit.max, "unit": limit.unit}
    assert str(maximum or limit.max) in body["detail"]


@SQLITE
def test_body_over_one_mib_is_413_naming_the_limit(client: Any, app: Any) -> None:
    before = _writes(app)
    big = b'{"title": "x", "description": "' + b"a" * limits.BODY.max + b'"}'
    resp = client.post("/v1/tasks", data=big, headers={**auth(), "Content-Type": "application/json"})
    _assert_limit(resp, 413, limits.BODY)
    assert _writes(app) == before


@SQLITE
@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tags", "/v1/notifications", "/healthz"])
def test_a_query_string_over_its_limit_is_414_naming_it(client: Any, path: str) -> None:
    resp = client.get(path + "?q=" + "a" * limits.QUERY_STRING.max, headers=auth())
    _assert_limit(resp, 414, limits.QUERY_STRING)
    ok = client.get(path + "?status=open&q=" + "a" * 100, headers=auth())
    assert ok.status_code == 200


@SQLITE
@pytest.mark.parametrize(
    ("query", "limit"),
    [
        ("/v1/tasks?q=" + "word " * 101, limits.SEARCH),
        (f"/v1/tasks?limit={limits.PAGE.max + 1}", limits.PAGE),
        (f"/v1/notifications?limit={limits.INBOX_PAGE.max + 1}", limits.INBOX_PAGE),
    ],
)
def test_search_length_and_page_sizes_are_bounded(client: Any, query: str, limit: limits.Limit) -> None:
    resp = client.get(query, headers=auth())
    _assert_limit(resp, 422, limit)
    assert resp.get_json()["errors"][0]["field"] in ("q", "limit")


@SQLITE
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "t" * (limits.TITLE.max + 1)}, "title"),
        ({"description": "d" * (limits.DESCRIPTION.max + 1)}, "description"),
        ({"tags": [f"t{i}" for i in range(limits.TAGS_PER_TASK.max + 1)]}, "tags"),
        ({"due_at": "2031-01-01T00:00:00Z", "reminders": [{"offset": f"-PT{i + 1}M"} for i in range(11)]}, "reminders"),
    ],
)
def test_field_limits_name_the_field_and_write_nothing(
    client: Any, app: Any, fields: dict[str, Any], field: str
) -> None:
    before = _writes(app)
    resp = client.post("/v1/tasks", json={"title": "x", **fields}, headers=auth())
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]
    assert _writes(app) == before


def test_open_tasks_per_user(make_app: Any) -> None:
    app = make_app(quotas=limits.Quotas(open_tasks=3, tags=100))
    client = app.apps["tasks-api"].test_client()
    ids = [client.post("/v1/tasks", json={"title": f"t{i}"}, headers=auth()).get_json()["id"] for i in range(3)]
    before = _writes(app)
    _assert_limit(client.post("/v1/tasks", json={"title": "one too many"}, headers=auth()), 422, limits.OPEN_TASKS, 3)
    assert _writes(app) == before
    # another user has their own allowance
    assert client.post("/v1/tasks", json={"title": "bob's"}, headers=auth("bob")).status_code == 201
    # completing one frees a place; reopening it while full is refused
    assert client.post(f"/v1/tasks/{ids[0]}/complete", headers=auth()).status_code == 200
    assert client.post("/v1/tasks", json={"title": "fits now"}, headers=auth()).status_code == 201
    app.bus.drain()
    before = _writes(app)
    _assert_limit(client.post(f"/v1/tasks/{ids[0]}/reopen", headers=auth()), 422, limits.OPEN_TASKS, 3)
    assert _writes(app) == before
    assert client.get(f"/v1/tasks/{ids[0]}", headers=auth()).get_json()["status"] == "completed"


def test_distinct_tags_per_user(make_app: Any) -> None:
    app = make_app(quotas=limits.Quotas(open_tasks=100, tags=3))
    client = app.apps["tasks-api"].test_client()
    task = client.post("/v1/tasks", json={"title": "a", "tags": ["home", "work"]}, headers=auth()).get_json()
    assert client.post("/v1/tasks", json={"title": "b", "tags": ["home", "errands"]}, headers=auth()).status_code == 201
    assert client.post("/v1/tasks", json={"title": "c", "tags": ["work", "home"]}, headers=auth()).status_code == 201
    before = _writes(app)
    resp = client.post("/v1/tasks", json={"title": "d", "tags": ["home", "garden"]}, headers=auth())
    _assert_limit(resp, 422, limits.TAGS_PER_USER, 3)
    resp = client.patch(f"/v1/tasks/{task['id']}", json={"tags": ["home", "garden"]}, headers=auth())
    _assert_limit(resp, 422, limits.TAGS_PER_USER, 3)
    assert _writes(app) == before
    assert client.patch(f"/v1/tasks/{task['id']}", json={"tags": ["errands"]}, headers=auth()).status_code == 200


def test_every_limit_is_documented_in_the_api_and_the_docs() -> None:
    described = document()["info"]["description"]
    docs = (ROOT / "docs" / "limits.md").read_text()
    for limit in limits.ALL:
        assert f"`{limit.name}`" in described, limit.name
        assert f"`{limit.name}`" in docs, limit.name
    for op in (op for item in document()["paths"].values() for op in item.values()):
        assert "414" in op["responses"]


# --- timeouts on outgoing calls ---------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers (a hung peer)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


@SQLITE
def test_a_hung_webhook_receiver_fails_the_delivery_after_the_timeout(make_app: Any, silent_server: str) -> None:
    assert DirectWebhookSender(lambda: "k", True).timeout == limits.OUTGOING_TIMEOUT.max
    app = make_app()
    app.root.use(webhooks=DirectWebhookSender(lambda: "k", True, timeout=1))
    client = app.apps["tasks-api"].test_client()
    assert client.put("/v1/settings", json={"webhook_url": silent_server + "/hook"}, headers=auth()).status_code == 200
    body, headers = structured(reminder_event("alice"))
    started = time.monotonic()
    resp = app.apps["notifier"].test_client().post("/events/reminders", data=body, headers=headers)
    assert time.monotonic() - started < 5
    assert resp.status_code == 500 and resp.get_json() == {"status": "RETRY"}


@SQLITE
def test_a_hung_jwks_endpoint_fails_sign_in_after_the_timeout(
    make_app: Any, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_auth, "OUTGOING_TIMEOUT", dataclasses.replace(limits.OUTGOING_TIMEOUT, max=1))
    app = make_app(jwks_url=silent_server + "/jwks.json")
    client = app.apps["tasks-api"].test_client()
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln"
    started = time.monotonic()
    resp = client.get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert time.monotonic() - started < 5
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"


def _vtodos(*items: tuple[str, str]) -> bytes:
    todos = "".join(f"BEGIN:VTODO\r\nUID:{uid}\r\nSUMMARY:{uid}\r\n{extra}END:VTODO\r\n" for uid, extra in items)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//limits//EN\r\n{todos}END:VCALENDAR\r\n".encode()


def test_an_import_skips_what_would_go_over_a_quota_and_imports_the_rest(make_app: Any) -> None:
    app = make_app(quotas=limits.Quotas(open_tasks=3, tags=2))
    client = app.apps["tasks-api"].test_client()
    assert client.post("/v1/tasks", json={"title": "mine", "tags": ["home"]}, headers=auth()).status_code == 201
    body = _vtodos(
        ("a", ""),
        ("b", "CATEGORIES:home\r\n"),
        ("c", ""),  # the fourth open task: over open_tasks_per_user
        ("d", "STATUS:COMPLETED\r\nCOMPLETED:20300101T000000Z\r\n"),  # completed: not an open task
        ("e", "STATUS:COMPLETED\r\nCOMPLETED:20300101T000000Z\r\nCATEGORIES:work,garden\r\n"),  # a third tag
    )
    resp = client.post("/v1/imports", data=body, headers={**auth(), "Content-Type": "text/calendar"})
    assert resp.status_code == 200, resp.get_data()
    result = resp.get_json()
    assert result["created"] == 3
    assert {s["uid"]: s["reason"] for s in result["skipped"]} == {
        "c": "at most 3 open tasks per user (limit open_tasks_per_user)",
        "e": "at most 2 distinct tags per user (limit tags_per_user)",
    }
    listed = client.get("/v1/tasks?status=all", headers=auth()).get_json()["items"]
    assert sorted(t["title"] for t in listed) == ["a", "b", "d", "mine"]
