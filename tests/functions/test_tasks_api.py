"""tasks-api through functions_framework.create_app(...).test_client(), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import TEST_SECRET, auth, token


def create(client: Any, user: str = "alice", **fields: Any) -> dict[str, Any]:
    body = {"title": "task", **fields}
    resp = client.post("/v1/tasks", json=body, headers=auth(user))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(microsecond=0)


# --- health and auth -----------------------------------------------------------------------


def test_health_and_readiness_need_no_token(client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json() == {"status": "ready"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic abc",
        "Bearer garbage",
        "Bearer " + token("alice", exp=1),  # expired
    ],
)
def test_bad_credentials_are_401_problem(client: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    resp = client.get("/v1/tasks", headers=headers)
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_alg_none_wrong_key_and_missing_sub_are_refused(client: Any) -> None:
    import jwt

    exp = int((NOW + timedelta(minutes=5)).timestamp())
    unsigned = jwt.encode({"sub": "alice", "exp": exp}, key="", algorithm="none")
    wrong = jwt.encode({"sub": "alice", "exp": exp}, "another-secret-of-enough-length-0123456789", algorithm="HS256")
    no_sub = jwt.encode({"exp": exp}, TEST_SECRET, algorithm="HS256")
    no_exp = jwt.encode({"sub": "alice"}, TEST_SECRET, algorithm="HS256")
    for tok in (unsigned, wrong, no_sub, no_exp):
        assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {tok}"}).status_code == 401


# --- create / get / patch / delete ---------------------------------------------------------


def test_create_returns_201_location_etag_and_the_task(client: Any) -> None:
    due = NOW + timedelta(days=1)
    resp = client.post(
        "/v1/tasks",
        json={
            "title": "  Write report  ",
            "description": "quarterly",
            "priority": "high",
            "tags": ["Work", "work", "Q4"],
            "due_at": iso(due),
            "timezone": "Europe/Berlin",
            "reminders": [{"offset": "-PT15M"}],
        },
        headers=auth(),
    )
    assert resp.status_code == 201
    task = resp.get_json()
    assert resp.headers["Location"] == f"/v1/tasks/{task['id']}"
    assert resp.headers["ETag"]
    assert task["title"] == "Write report"
    assert task["tags"] == ["work", "q4"]
    assert task["status"] == "open" and task["priority"] == "high" and task["version"] == 1
    assert task["due_at"] == iso(due)
    assert task["occurrence"] == 1 and task["series_id"] is None
    got = client.get(task["id"].join(["/v1/tasks/", ""]), headers=auth())
    assert got.status_code == 200 and got.get_json() == task
    assert got.headers["ETag"] == resp.headers["ETag"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"title": "ok", "description": "d" * 10001}, "description"),
        ({"title": "ok", "priority": "extreme"}, "priority"),
        ({"title": "ok", "tags": ["a" * 41]}, "tags"),
        ({"title": "ok", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"title": "ok", "timezone": "Mars/Olympus"}, "timezone"),
        ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
        ({"title": "ok", "due_at": "2030-01-01T10:00:00"}, "due_at"),
        ({"title": "ok", "recurrence": {"rule": "FREQ=DAILY"}}, "recurrence"),
        ({"title": "ok", "due_at": "2030-01-01T10:00:00Z", "recurrence": {"rule": "FREQ=HOURLY"}}, "recurrence.rule"),
        (
            {"title": "ok", "due_at": "2030-01-01T10:00:00Z", "recurrence": {"rule": "FREQ=DAILY", "anchor": "x"}},
            "recurrence.anchor",
        ),
        ({"title": "ok", "reminders": [{"offset": "-PT15M"}]}, "reminders"),
        ({"title": "ok", "due_at": "2030-01-01T10:00:00Z", "reminders": [{"offset": "soon"}]}, "reminders.0"),
        ({"title": "ok", "due_at": "2030-01-01T10:00:00Z", "reminders": [{"offset": "-PT1M"}] * 11}, "reminders"),
        ({"title": "ok", "colour": "red"}, "colour"),
        ({"title": "ok", "status": "completed"}, "status"),
    ],
)
def test_invalid_create_is_422_with_field_errors_and_writes_nothing(
    client: Any, body: dict[str, Any], field: str
) -> None:
    resp = client.post("/v1/tasks", json=body, headers=auth())
    assert resp.status_code == 422, resp.get_json()
    problem = resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert problem["status"] == 422 and problem["errors"]
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem["errors"]
    assert client.get("/v1/tasks?status=all", headers=auth()).get_json()["items"] == []


def test_unknown_field_is_reported_as_unknown(client: Any) -> None:
    resp = client.post("/v1/tasks", json={"title": "x", "colour": "red"}, headers=auth())
    assert {"field": "colour", "message": "unknown field", "type": "extra_forbidden"} in resp.get_json()["errors"]


def test_read_only_fields_say_so(client: Any) -> None:
    task = create(client)
    resp = client.patch(f"/v1/tasks/{task['id']}", json={"status": "completed"}, headers=auth())
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["message"].startswith("read-only field; use POST")
    assert client.get(f"/v1/tasks/{task['id']}", headers=auth()).get_json()["status"] == "open"


def test_malformed_json_is_400_and_oversized_body_is_413(client: Any) -> None:
    resp = client.post("/v1/tasks", data=b"{not json", headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
    big = json.dumps({"title": "x", "description": "y" * (1024 * 1024)})
    resp = client.post("/v1/tasks", data=big, headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert client.get("/v1/tasks?status=all", headers=auth()).get_json()["items"] == []


def test_patch_is_partial_null_clears_and_if_match_guards(client: Any) -> None:
    due = NOW + timedelta(days=2)
    task = create(client, title="a", description="keep", due_at=iso(due), tags=["x"])
    resp = client.patch(f"/v1/tasks/{task['id']}", json={"title": "b", "due_at": None, "tags": None}, headers=auth())
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["title"] == "b" and body["description"] == "keep"
    assert body["due_at"] is None and body["tags"] == [] and body["version"] == 2
    stale = client.patch(
        f"/v1/tasks/{task['id']}", json={"title": "c"}, headers={**auth(), "If-Match": f'"{task["id"]}-v1"'}
    )
    assert stale.status_code == 412
    current = client.get(f"/v1/tasks/{task['id']}", headers=auth())
    assert current.get_json()["title"] == "b"
    ok = client.patch(
        f"/v1/tasks/{task['id']}", json={"title": "c"}, headers={**auth(), "If-Match": current.headers["ETag"]}
    )
    assert ok.status_code == 200 and ok.get_json()["title"] == "c"
    assert client.patch(f"/v1/tasks/{task['id']}", json={"title": None}, headers=auth()).status_code == 422


def test_clearing_due_of_a_recurring_task_is_refused(client: Any) -> None:
    task = create(client, due_at=iso(NOW + timedelta(days=1)), recurrence={"rule": "FREQ=DAILY"})
    resp = client.patch(f"/v1/tasks/{task['id']}", json={"due_at": None}, headers=auth())
    assert resp.status_code == 422
    assert client.get(f"/v1/tasks/{task['id']}", headers=auth()).get_json()["due_at"] is not None


def test_complete_is_idempotent_and_reopen_reverts(client: Any, app: Any) -> None:
    task = create(client)
    first = client.post(f"/v1/tasks/{task['id']}/complete", headers=auth())
    assert first.status_code == 200 and first.get_json()["status"] == "completed"
    assert first.get_json()["completed_at"] is not None
    second = client.post(f"/v1/tasks/{task['id']}/complete", headers=auth())
    assert second.status_code == 200 and second.get_json()["version"] == first.get_json()["version"]
    app.bus.drain()
    history = client.get(f"/v1/tasks/{task['id']}/history", headers=auth()).get_json()["items"]
    assert [h["type"].split(".")[3] for h in history] == ["created", "completed"]
    reopened = client.post(f"/v1/tasks/{task['id']}/reopen", headers=auth()).get_json()
    assert reopened["status"] == "open" and reopened["completed_at"] is None


def test_delete_then_404(client: Any) -> None:
    task = create(client)
    assert client.delete(f"/v1/tasks/{task['id']}", headers=auth()).status_code == 204
    assert client.get(f"/v1/tasks/{task['id']}", headers=auth()).status_code == 404
    assert client.delete(f"/v1/tasks/{task['id']}", headers=auth()).status_code == 404


def test_unknown_route_and_bad_id_are_404_problem(client: Any) -> None:
    assert client.get("/v1/nope", headers=auth()).status_code == 404
    resp = client.get("/v1/tasks/not-a-uuid", headers=auth())
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert client.put("/v1/tasks", headers=auth()).status_code == 405


# --- isolation -----------------------------------------------------------------------------


def test_another_users_task_is_404_on_every_route(client: Any, app: Any) -> None:
    task = create(client, "alice", tags=["secret"])
    tid = task["id"]
    bob = auth("bob")
    assert client.get(f"/v1/tasks/{tid}", headers=bob).status_code == 404
    assert client.patch(f"/v1/tasks/{tid}", json={"title": "x"}, headers=bob).status_code == 404
    assert client.post(f"/v1/tasks/{tid}/complete", headers=bob).status_code == 404
    assert client.post(f"/v1/tasks/{tid}/reopen", headers=bob).status_code == 404
    app.bus.drain()
    assert client.get(f"/v1/tasks/{tid}/history", headers=bob).status_code == 404
    assert client.delete(f"/v1/tasks/{tid}", headers=bob).status_code == 404
    assert client.get("/v1/tasks?status=all", headers=bob).get_json()["items"] == []
    assert client.get("/v1/tags", headers=bob).get_json()["items"] == []
    assert client.get("/v1/notifications", headers=bob).get_json()["items"] == []
    assert client.get("/v1/settings", headers=bob).get_json() == {"webhook_url": None}
    assert client.get(f"/v1/tasks/{tid}", headers=auth("alice")).get_json()["title"] == "task"


# --- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_replays_and_refuses_a_different_body(client: Any) -> None:
    headers = {**auth(), "Idempotency-Key": "k-1"}
    first = client.post("/v1/tasks", json={"title": "once"}, headers=headers)
    again = client.post("/v1/tasks", json={"title": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/tasks", json={"title": "twice"}, headers=headers)
    assert other.status_code == 422
    assert len(client.get("/v1/tasks", headers=auth()).get_json()["items"]) == 1
    # keys are per user
    bob = client.post("/v1/tasks", json={"title": "once"}, headers={**auth("bob"), "Idempotency-Key": "k-1"})
    assert bob.status_code == 201 and bob.get_json()["id"] != first.get_json()["id"]


def test_idempotency_key_in_flight_is_409(client: Any, app: Any) -> None:
    import hashlib

    key = "idem:" + hashlib.sha256(b"alice\x00busy").hexdigest()
    fp = hashlib.sha256(json.dumps({"title": "x"}, sort_keys=True).encode()).hexdigest()
    app.root.state.save(key, json.dumps({"state": "running", "fingerprint": fp}), ttl_seconds=60)
    resp = client.post("/v1/tasks", json={"title": "x"}, headers={**auth(), "Idempotency-Key": "busy"})
    assert resp.status_code == 409
    assert client.get("/v1/tasks", headers=auth()).get_json()["items"] == []


# --- list: filters, search, sort, pagination -----------------------------------------------


def _titles(client: Any, query: str, user: str = "alice") -> list[str]:
    resp = client.get(f"/v1/tasks?{query}", headers=auth(user))
    assert resp.status_code == 200, resp.get_json()
    return [t["title"] for t in resp.get_json()["items"]]


def walk_pages(client: Any, query: str, limit: int, cursor: str | None = None, field: str = "title") -> list[str]:
    """Every page of ``query``, ``limit`` at a time from ``cursor`` on: each item's ``field``."""
    seen: list[str] = []
    for _ in range(20):
        url = f"/v1/tasks?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth()).get_json()
        assert len(page["items"]) <= limit
        seen += [t[field] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"the cursor never ended: {seen}")


def test_filters(client: Any) -> None:
    soon = NOW + timedelta(hours=5)
    later = NOW + timedelta(days=5)
    past = NOW - timedelta(days=1)
    create(client, title="a", priority="high", tags=["work", "q4"], due_at=iso(soon))
    create(client, title="b", priority="low", tags=["home"], due_at=iso(later))
    create(client, title="c", priority="urgent", tags=["work"], due_at=iso(past))
    create(client, title="d", priority="none")
    done = create(client, title="e", tags=["work"])
    client.post(f"/v1/tasks/{done['id']}/complete", headers=auth())
    create(client, title="f", due_at=iso(later), recurrence={"rule": "FREQ=WEEKLY"})

    assert sorted(_titles(client, "")) == ["a", "b", "c", "d", "f"]
    assert _titles(client, "status=completed") == ["e"]
    assert sorted(_titles(client, "status=all")) == ["a", "b", "c", "d", "e", "f"]
    assert sorted(_titles(client, "priority=high,urgent")) == ["a", "c"]
    assert sorted(_titles(client, "tags=work")) == ["a", "c"]
    assert _titles(client, "tags=work,q4") == ["a"]
    assert sorted(_titles(client, "tags=q4,home&tag_mode=any")) == ["a", "b"]
    assert sorted(_titles(client, f"due_before={iso(NOW + timedelta(days=1))}")) == ["a", "c"]
    assert sorted(_titles(client, f"due_after={iso(NOW)}")) == ["a", "b", "f"]
    assert _titles(client, "overdue=true") == ["c"]
    assert _titles(client, "has_due=false") == ["d"]
    assert _titles(client, "recurring=true") == ["f"]
    assert "f" not in _titles(client, "recurring=false")


@pytest.mark.parametrize(
    "query",
    [
        "status=closed",
        "priority=extreme",
        "sort=colour",
        "sort=due_at,due_at",
        "limit=0",
        "limit=201",
        "limit=ten",
        "overdue=maybe",
        "due_before=yesterday",
        "tag_mode=some",
        "cursor=%%%",
        "bogus=1",
        "sort=relevance",
    ],
)
def test_bad_query_parameters_are_422(client: Any, query: str) -> None:
    resp = client.get(f"/v1/tasks?{query}", headers=auth())
    assert resp.status_code == 422, query
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"]


def test_default_sort_due_then_priority_then_created_with_undated_last(client: Any) -> None:
    d1 = iso(NOW + timedelta(days=1))
    create(client, title="no-due-1")
    create(client, title="d1-low", due_at=d1, priority="low")
    create(client, title="d1-urgent", due_at=d1, priority="urgent")
    create(client, title="d0", due_at=iso(NOW + timedelta(hours=1)))
    create(client, title="no-due-2")
    assert _titles(client, "") == ["d0", "d1-urgent", "d1-low", "no-due-1", "no-due-2"]
    # ties are broken by creation time
    assert _titles(client, "sort=-due_at") == ["d1-low", "d1-urgent", "d0", "no-due-1", "no-due-2"]
    assert _titles(client, "sort=title")[:2] == ["d0", "d1-low"]
    assert _titles(client, "sort=-priority,title")[0] == "d1-urgent"


def test_search_every_word_prefix_case_insensitive_relevance(client: Any) -> None:
    create(client, title="Buy milk", description="from the Corner shop")
    create(client, title="Milkshake recipe", description="banana")
    create(client, title="Call mom", description="about the milk order")
    create(client, title="Unrelated")
    assert sorted(_titles(client, "q=MILK")) == ["Buy milk", "Call mom", "Milkshake recipe"]
    assert _titles(client, "q=milk corn") == ["Buy milk"]
    assert _titles(client, "q=ban") == ["Milkshake recipe"]
    assert _titles(client, "q=milk zebra") == []
    # title matches outrank description-only matches
    assert _titles(client, "q=milk")[-1] == "Call mom"
    assert _titles(client, "q=milk&sort=-relevance")[0] == "Call mom"


def test_cursor_pagination_walks_every_task_once(client: Any) -> None:
    for i in range(7):
        due = iso(NOW + timedelta(hours=i % 3)) if i % 2 else None
        create(client, title=f"t{i}", due_at=due, priority=["low", "high"][i % 2])
    for sort in ("", "sort=-priority,title", "sort=-due_at", "sort=title", "sort=-updated_at"):
        expected = _titles(client, f"limit=200&{sort}")
        assert walk_pages(client, sort, 3) == expected, sort
    first = client.get("/v1/tasks?limit=3", headers=auth()).get_json()
    other = client.get(f"/v1/tasks?limit=3&sort=title&cursor={first['next_cursor']}", headers=auth())
    assert other.status_code == 422


def test_all_of_tags_walk_the_same_tasks_as_the_whole_list(client: Any) -> None:
    """All of several tags (PostgreSQL answers from a GIN index of the task rows' tags, SQLite from
    task_tags): page by page, in every order, exactly the user's live tasks that have every tag
    now, as filtering the whole list would give."""
    sets = [["work", "q4"], ["q4", "work", "home"], ["work"], ["q4"], ["home", "q4"], [], ["work", "q4"]]
    made = []
    for i in range(21):
        due = iso(NOW + timedelta(hours=i % 4)) if i % 3 else None
        made.append(create(client, title=f"t{i % 5}", tags=sets[i % len(sets)], due_at=due, priority="high"))
    create(client, user="bob", title="theirs", tags=["work", "q4"])
    client.delete(f"/v1/tasks/{made[0]['id']}", headers=auth())  # deleted: never listed
    client.patch(f"/v1/tasks/{made[1]['id']}", json={"tags": ["home"]}, headers=auth())  # lost both
    client.patch(f"/v1/tasks/{made[2]['id']}", json={"tags": ["Q4", "work"]}, headers=auth())  # gained q4
    client.post(f"/v1/tasks/{made[7]['id']}/complete", headers=auth())
    for tags in ("work,q4", "q4,WORK", "work,q4,home", "work,nothing"):
        want = set(tags.lower().split(","))
        for extra in ("", "sort=-priority,title", "sort=-due_at", "sort=title", "status=all", "status=all&sort=title"):
            everything = client.get(f"/v1/tasks?limit=200&{extra}", headers=auth()).get_json()["items"]
            expected = [t["id"] for t in everything if want <= set(t["tags"])]
            assert walk_pages(client, f"tags={tags}&{extra}", 2, field="id") == expected, (tags, extra)
    page = client.get("/v1/tasks?tags=work,q4&status=all&limit=200", headers=auth()).get_json()
    listed = {t["id"] for t in page["items"]}
    assert made[2]["id"] in listed and made[7]["id"] in listed
    assert not {made[0]["id"], made[1]["id"]} & listed and len(listed) == 8


def test_search_of_several_words_finds_every_task_whose_words_start_with_them(client: Any) -> None:
    """Several words (PostgreSQL narrows by an index of the owner's word prefixes up to 6 letters,
    then checks the words; SQLite's FTS5 answers alone): the same tasks either way, also when two
    words share their first 6 letters, for words with accents, and after edits and deletes."""
    create(client, title="Reporting milk bread")
    create(client, title="Reported bread")
    create(client, title="Report milk")
    create(client, title="Milkshake", description="with breadsticks")
    create(client, title="Café crème brûlée", description="milk")
    create(client, user="bob", title="milk bread")
    gone = create(client, title="milk bread, deleted")
    client.delete(f"/v1/tasks/{gone['id']}", headers=auth())
    changed = create(client, title="milk bread")
    client.patch(f"/v1/tasks/{changed['id']}", json={"title": "milk only"}, headers=auth())
    renamed = create(client, title="nothing yet")
    client.patch(f"/v1/tasks/{renamed['id']}", json={"title": "bread and milk"}, headers=auth())
    expected = {
        "milk bread": ["Milkshake", "Reporting milk bread", "bread and milk"],
        "BREAD milk": ["Milkshake", "Reporting milk bread", "bread and milk"],
        "reporti milk": ["Reporting milk bread"],
        "reported bread": ["Reported bread"],
        "report milk": ["Report milk", "Reporting milk bread"],
        "report bread": ["Reported bread", "Reporting milk bread"],
        "brea milksh": ["Milkshake"],
        "crème café": ["Café crème brûlée"],
        "milk brûlée crème": ["Café crème brûlée"],
        "milk zebra": [],
    }
    for q, titles in expected.items():
        assert sorted(_titles(client, f"q={q}&limit=200")) == titles, q
        walked: list[str] = []
        cursor = None
        while True:
            page = client.get(f"/v1/tasks?q={q}&limit=1" + (f"&cursor={cursor}" if cursor else ""), headers=auth())
            walked += [t["title"] for t in page.get_json()["items"]]
            if (cursor := page.get_json()["next_cursor"]) is None:
                break
        assert walked == _titles(client, f"q={q}&limit=200"), q


def test_search_pagination(client: Any) -> None:
    for i in range(5):
        create(client, title=f"report {i}", description="report " * i)
    expected = _titles(client, "q=report&limit=200")
    page1 = client.get("/v1/tasks?q=report&limit=2", headers=auth()).get_json()
    page2 = client.get(f"/v1/tasks?q=report&limit=2&cursor={page1['next_cursor']}", headers=auth()).get_json()
    assert [t["title"] for t in page1["items"] + page2["items"]] == expected[:4]


def test_tags_with_counts(client: Any) -> None:
    create(client, tags=["work", "q4"])
    create(client, tags=["work"])
    gone = create(client, tags=["old"])
    client.delete(f"/v1/tasks/{gone['id']}", headers=auth())
    assert client.get("/v1/tags", headers=auth()).get_json() == {
        "items": [{"name": "work", "count": 2}, {"name": "q4", "count": 1}]
    }


def test_openapi_describes_every_route(client: Any) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/complete",
        "/v1/tasks/{id}/reopen",
        "/v1/tasks/{id}/history",
        "/v1/tags",
        "/v1/notifications",
        "/v1/settings",
        "/healthz",
        "/readyz",
    ):
        assert path in doc["paths"], path
    from openapi_spec_validator import validate

    validate(doc)  # a valid OpenAPI 3.1 document, $refs resolving
    create_schema = doc["components"]["schemas"]["TaskCreate"]
    assert create_schema["additionalProperties"] is False
    assert create_schema["properties"]["title"]["maxLength"] >= 200


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest",
        "https://192.168.1.1/",
        "not a url",
        "https://user:pw@example.com/",
    ],
)
def test_settings_refuse_unsafe_webhooks(client: Any, url: str) -> None:
    resp = client.put("/v1/settings", json={"webhook_url": url}, headers=auth())
    assert resp.status_code == 422
    assert client.get("/v1/settings", headers=auth()).get_json() == {"webhook_url": None}


def test_settings_accept_loopback_in_embedded_mode_and_null_clears(client: Any) -> None:
    url = "http://127.0.0.1:9/hook"
    assert client.put("/v1/settings", json={"webhook_url": url}, headers=auth()).get_json() == {"webhook_url": url}
    assert client.get("/v1/settings", headers=auth()).get_json() == {"webhook_url": url}
    assert client.put("/v1/settings", json={"webhook_url": None}, headers=auth()).status_code == 200
    assert client.get("/v1/settings", headers=auth()).get_json() == {"webhook_url": None}
    assert client.put("/v1/settings", json={"hook": "x"}, headers=auth()).status_code == 422


def test_idempotency_key_creates_one_task_even_when_its_record_is_lost(client: Any, app: Any) -> None:
    """A crash between the commit and the idempotency record (or a failed write of it) must not let
    the client's retry create a second task: the key names the task."""
    from taskflow.api.app import idempotency_state_key

    headers = {**auth(), "Idempotency-Key": "crash-1"}
    first = client.post("/v1/tasks", json={"title": "once"}, headers=headers)
    assert first.status_code == 201
    app.root.state.delete(idempotency_state_key("alice", "crash-1"))
    again = client.post("/v1/tasks", json={"title": "once"}, headers=headers)
    assert again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/tasks", headers=auth()).get_json()["items"]) == 1


def test_idempotency_key_race_on_a_recurring_task_answers_the_first_task_and_writes_nothing_twice(
    client: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two attempts with one key that both miss the idempotency record and the task (the record
    lost, and the second attempt's check made before the first committed): the second insert fails
    on the task's id, and the attempt answers the first task. Its reminder and event are not
    written a second time."""
    from taskflow.adapters import tables
    from taskflow.adapters.repository import TaskRepository
    from taskflow.api.app import idempotency_state_key
    from tests.functions.test_consumers import count

    body = {
        "title": "weekly",
        "due_at": "2030-01-07T09:00:00Z",
        "recurrence": {"rule": "FREQ=WEEKLY"},
        "reminders": [{"offset": "-PT1H"}],
    }
    headers = {**auth(), "Idempotency-Key": "race-1"}
    first = client.post("/v1/tasks", json=body, headers=headers)
    assert first.status_code == 201
    app.root.state.delete(idempotency_state_key("alice", "race-1"))
    checked_early = [True]
    get_any = TaskRepository.get_any

    def racing(repo: TaskRepository, task_id: str) -> Any:
        if checked_early:
            checked_early.pop()
            return None  # what the check saw before the first attempt committed
        return get_any(repo, task_id)

    monkeypatch.setattr(TaskRepository, "get_any", racing)
    again = client.post("/v1/tasks", json=body, headers=headers)
    assert again.status_code == 201, again.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [count(app, t) for t in (tables.tasks, tables.reminders, tables.outbox)] == [1, 1, 1]


def test_database_down_is_503_with_retry_after_and_writes_nothing(make_app: Any, clock: Any) -> None:
    """PostgreSQL restarting: a write answers 503 + Retry-After (a careful client retries), not 500."""
    from taskflow import config
    from taskflow.adapters import db
    from taskflow.bootstrap import Root
    from taskflow.embedded import Embedded

    make_app()  # the environment of the other tests
    closed = db.build_engine("postgresql+pg8000://nobody:nothing@127.0.0.1:9/none")  # nothing listens on port 9
    emb = Embedded(root=Root(config.load(), clock=clock, engine=closed)).start(timers=False)
    try:
        down = emb.apps["tasks-api"].test_client()
        for method, path in (("post", "/v1/tasks"), ("get", "/v1/tasks"), ("get", "/readyz")):
            resp = getattr(down, method)(path, json={"title": "x"} if method == "post" else None, headers=auth())
            assert resp.status_code == 503, (path, resp.get_json())
            assert resp.mimetype == "application/problem+json"
            if path != "/readyz":
                assert int(resp.headers["Retry-After"]) > 0
    finally:
        emb.stop()
        closed.dispose()
