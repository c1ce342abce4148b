"""The routes the web app needs, through tasks-api's test client: its static files and their
headers, development sign-in, the recurrence preview and the inbox's ETag."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clock, auth

DUE = "2030-03-29T09:00:00Z"  # a Friday; Europe/Paris moves to summer time on Sunday the 31st


@pytest.fixture
def site(env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built app as tools/build_web.py lays it out: index.html, hashed assets and their .gz siblings."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<!doctype html><script type="module" src="/assets/app-1a2b3c.js"></script>')
    js = b"console.log('taskflow');" * 50
    (tmp_path / "assets" / "app-1a2b3c.js").write_bytes(js)
    (tmp_path / "assets" / "app-1a2b3c.js.gz").write_bytes(gzip.compress(js))
    monkeypatch.setenv("TASKFLOW_WEB_DIR", str(tmp_path))
    return tmp_path


def test_the_page_is_served_at_root_with_strict_security_headers(site: Path, client: Any) -> None:
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-cache"  # a new build is seen on the next load


def test_hashed_assets_are_immutable_and_gzipped_when_accepted(site: Path, client: Any) -> None:
    plain = client.get("/assets/app-1a2b3c.js")
    assert plain.status_code == 200 and plain.mimetype == "text/javascript"
    assert plain.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Content-Encoding" not in plain.headers
    zipped = client.get("/assets/app-1a2b3c.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.get_data()) == plain.get_data()
    again = client.get("/assets/app-1a2b3c.js", headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/assets/missing.js", "/../pyproject.toml", "/assets/../../etc/passwd"])
def test_unknown_or_escaping_paths_are_404_problems(site: Path, client: Any, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"


def test_the_api_is_not_shadowed_by_static_files(site: Path, client: Any) -> None:
    assert client.get("/v1/tasks").status_code == 401
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_dev_token_is_refused_with_a_configured_secret(client: Any) -> None:
    assert client.get("/v1/auth/options").get_json() == {"dev_token": False, "oidc": None}
    resp = client.post("/v1/auth/dev-token", json={"user": "mallory"})
    assert resp.status_code == 403 and resp.mimetype == "application/problem+json"
    assert "access_token" not in resp.get_data(as_text=True)


def test_dev_token_signs_in_a_user_name_when_the_generated_secret_is_in_use(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the generated secret lives in ./var/
    monkeypatch.delenv("TASKFLOW_JWT_SECRET")
    monkeypatch.setenv("TASKFLOW_DEV", "1")
    client = make_app().apps["tasks-api"].test_client()
    assert client.get("/v1/auth/options").get_json()["dev_token"] is True
    bad = client.post("/v1/auth/dev-token", json={"user": "   "})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "user"
    token = client.post("/v1/auth/dev-token", json={"user": "ann"}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post("/v1/tasks", json={"title": "from the browser"}, headers=headers)
    assert created.status_code == 201
    assert [t["title"] for t in client.get("/v1/tasks", headers=headers).get_json()["items"]] == ["from the browser"]


def test_oidc_options_come_from_the_environment(site: Path, make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_OIDC_ISSUER", "https://id.example.com/realms/team/")
    monkeypatch.setenv("TASKFLOW_OIDC_CLIENT_ID", "taskflow-web")
    client = make_app().apps["tasks-api"].test_client()
    assert client.get("/v1/auth/options").get_json()["oidc"] == {
        "issuer": "https://id.example.com/realms/team",
        "client_id": "taskflow-web",
        "scope": "openid",
    }
    assert "connect-src 'self' https://id.example.com" in client.get("/").headers["Content-Security-Policy"]


def test_preview_gives_the_next_occurrences_in_the_tasks_zone_and_writes_nothing(client: Any) -> None:
    body = {"rule": "freq=monthly;byday=-1fr", "due_at": DUE, "timezone": "Europe/Paris"}
    resp = client.post("/v1/recurrence/preview", json=body, headers=auth())
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert got["rule"] == "FREQ=MONTHLY;BYDAY=-1FR" and got["anchor"] == "due"
    # last Fridays at 10:00 Paris time: 08:00Z in summer, 09:00Z in winter
    assert got["occurrences"] == [
        "2030-04-26T08:00:00Z",
        "2030-05-31T08:00:00Z",
        "2030-06-28T08:00:00Z",
        "2030-07-26T08:00:00Z",
        "2030-08-30T08:00:00Z",
    ]
    assert client.get("/v1/tasks?status=all", headers=auth()).get_json()["items"] == []


def test_preview_ends_with_the_series(client: Any) -> None:
    body = {"rule": "FREQ=DAILY;COUNT=3", "due_at": DUE, "anchor": "completion"}
    got = client.post("/v1/recurrence/preview", json=body, headers=auth()).get_json()
    assert got["occurrences"] == ["2030-03-30T09:00:00Z", "2030-03-31T09:00:00Z"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rule": "FREQ=HOURLY", "due_at": DUE}, "rule"),
        ({"rule": "FREQ=DAILY;BYHOUR=3", "due_at": DUE}, "rule"),
        ({"rule": "FREQ=DAILY", "due_at": "2030-03-29T09:00:00"}, "due_at"),
        ({"rule": "FREQ=DAILY", "due_at": DUE, "timezone": "Mars/Olympus"}, "timezone"),
        ({"rule": "FREQ=DAILY", "due_at": DUE, "count": 500}, "count"),
        ({"rule": "FREQ=DAILY"}, "due_at"),
    ],
)
def test_bad_preview_input_is_a_422_naming_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    resp = client.post("/v1/recurrence/preview", json=body, headers=auth())
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert [e["field"] for e in resp.get_json()["errors"]] == [field]


def test_preview_needs_a_token(client: Any) -> None:
    assert client.post("/v1/recurrence/preview", json={"rule": "FREQ=DAILY", "due_at": DUE}).status_code == 401


def test_inbox_polling_gets_304_until_something_arrives(client: Any, app: Any, clock: Clock) -> None:
    first = client.get("/v1/notifications", headers=auth())
    etag = first.headers["ETag"]
    unchanged = client.get("/v1/notifications", headers={**auth(), "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.get_data() == b""
    from datetime import UTC, datetime, timedelta

    soon = datetime.now(UTC) + timedelta(seconds=1)
    task = client.post(
        "/v1/tasks",
        json={"title": "call mum", "reminders": [{"at": soon.isoformat()}]},
        headers=auth(),
    ).get_json()
    clock.advance(seconds=1.5)
    app.tick("reminder-dispatch")
    app.bus.drain()  # the notifier writes the inbox from the reminder.due event
    changed = client.get("/v1/notifications", headers={**auth(), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert [n["task_id"] for n in changed.get_json()["items"]] == [task["id"]]


def test_openapi_documents_the_web_app_routes(client: Any) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert "/v1/recurrence/preview" in doc["paths"] and "/v1/auth/dev-token" in doc["paths"]
    assert "304" in doc["paths"]["/v1/notifications"]["get"]["responses"]
    from openapi_spec_validator import validate

    validate(doc)
