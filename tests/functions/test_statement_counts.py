"""How much database work each request costs: statements, transactions and (on PostgreSQL) round
trips, counted on the request's own thread. Deterministic counts, not timings: a change that adds
a statement to the hot path fails here and has to say why (issue 9; bench/README.md has the
timings).

Statements exclude BEGIN and COMMIT/ROLLBACK, which are counted as transactions. On PostgreSQL
the driver (``adapters.pgwire``) sends BEGIN with the first statement, so a write costs one round
trip per statement plus the COMMIT, and a read its SELECT plus the ROLLBACK.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import CacheStats

from tests.conftest import auth

WHEN = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
FULL_TASK = {
    "title": "Pay rent",
    "description": "before the 5th",
    "priority": "high",
    "tags": ["home", "money", "monthly"],
    "due_at": WHEN.isoformat(),
    "reminders": [{"offset": "-PT1H"}, {"offset": "-P1D"}],
}


@dataclass
class Counts:
    statements: list[str] = field(default_factory=list)  # each one's first word
    sent: list[str] = field(default_factory=list)  # their text
    compiled: list[str] = field(default_factory=list)  # those compiled for their execution (cache misses)
    transactions: int = 0
    round_trips: int = 0


@contextmanager
def counting(engine: Engine) -> Iterator[Counts]:
    """Count what this thread sends (the in-process consumers run on other threads)."""
    me = threading.get_ident()
    counts = Counts()
    started: dict[int, int] = {}

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if threading.get_ident() == me and not statement.lstrip().upper().startswith("BEGIN"):
            counts.statements.append(statement.split(None, 1)[0].upper())
            counts.sent.append(statement)
            if context.cache_hit is CacheStats.CACHE_MISS:
                counts.compiled.append(statement[:60])

    def on_end(conn: Any) -> None:
        if threading.get_ident() == me:
            counts.transactions += 1

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if threading.get_ident() == me and hasattr(dbapi_conn, "round_trips"):
            started[id(dbapi_conn)] = dbapi_conn.round_trips

    def on_checkin(dbapi_conn: Any, record: Any) -> None:
        if id(dbapi_conn) in started:
            counts.round_trips += dbapi_conn.round_trips - started.pop(id(dbapi_conn))

    hooks = [
        (engine, "before_cursor_execute", on_execute),
        (engine, "commit", on_end),
        (engine, "rollback", on_end),
        (engine.pool, "checkout", on_checkout),
        (engine.pool, "checkin", on_checkin),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield counts
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


@pytest.fixture
def api(app: Any) -> tuple[Any, Engine, bool]:
    engine = app.root.engine
    return app.apps["tasks-api"].test_client(), engine, engine.dialect.name == "postgresql"


def _create(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/v1/tasks", json=body, headers=auth())
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def test_a_create_is_one_transaction_of_one_insert_per_table(api: tuple[Any, Engine, bool]) -> None:
    client, engine, pg = api
    with counting(engine) as full:
        _create(client, FULL_TASK)
    # The per-user quotas (open tasks, distinct tags: docs/limits.md) read first, in one SELECT;
    # then the task, its tags, its reminders, its event (outbox).
    assert full.statements == ["SELECT"] + ["INSERT"] * 4
    assert full.transactions == 1
    if pg:
        assert full.round_trips == 6  # the quota read (BEGIN rides with it), four inserts and COMMIT

    with counting(engine) as bare:
        _create(client, {"title": "milk"})
    assert bare.statements == ["SELECT", "INSERT", "INSERT"]  # no tags, no reminders: the task and its event
    assert bare.transactions == 1
    if pg:
        assert bare.round_trips == 4


def test_an_update_a_completion_and_a_get_touch_only_what_changed(api: tuple[Any, Engine, bool]) -> None:
    client, engine, pg = api
    task = _create(client, FULL_TASK)
    url = f"/v1/tasks/{task['id']}"

    with counting(engine) as title:
        assert client.patch(url, json={"title": "Pay the rent"}, headers=auth()).status_code == 200
    # lock and read, update, the event: tags and reminders did not change, so they are not rewritten
    assert title.statements == ["SELECT", "UPDATE", "INSERT"]
    assert title.transactions == 1
    if pg:
        assert title.round_trips == 4

    with counting(engine) as tags:
        assert client.patch(url, json={"tags": ["home"]}, headers=auth()).status_code == 200
    assert tags.statements == ["SELECT", "UPDATE", "DELETE", "INSERT", "INSERT"]  # tags replaced in one insert

    with counting(engine) as complete:
        assert client.post(url + "/complete", headers=auth()).status_code == 200
    # lock and read, update, drop the pending reminders, the event
    assert complete.statements == ["SELECT", "UPDATE", "DELETE", "INSERT"]
    assert complete.transactions == 1
    if pg:
        assert complete.round_trips == 5

    plain = _create(client, {"title": "milk"})
    with counting(engine) as no_reminders:
        assert client.post(f"/v1/tasks/{plain['id']}/complete", headers=auth()).status_code == 200
    assert no_reminders.statements == ["SELECT", "UPDATE", "INSERT"]  # it never had reminders: none to drop

    with counting(engine) as again:
        assert client.post(f"/v1/tasks/{plain['id']}/complete", headers=auth()).status_code == 200
    assert again.statements == ["SELECT"]  # already completed: nothing written, no event

    with counting(engine) as get:
        assert client.get(url, headers=auth()).status_code == 200
    assert get.statements == ["SELECT"]
    if pg:
        assert get.round_trips == 2  # the SELECT (with BEGIN) and the ROLLBACK


@pytest.mark.parametrize(
    "query",
    ["", "?sort=-priority,title", "?tags=home,money&tag_mode=any", "?q=rent", "?overdue=true&priority=high,urgent"],
)
def test_a_list_page_is_one_select(api: tuple[Any, Engine, bool], query: str) -> None:
    client, engine, pg = api
    for i in range(3):
        _create(client, {**FULL_TASK, "title": f"rent {i}"})
    with counting(engine) as page:
        resp = client.get("/v1/tasks" + query + ("&" if query else "?") + "limit=2", headers=auth())
        assert resp.status_code == 200
    # a search reads its candidate window once, as a CTE: one WITH ... SELECT
    assert page.statements == (["WITH"] if "q=" in query else ["SELECT"])
    if pg:
        assert page.round_trips == 2
    cursor = resp.get_json()["next_cursor"]
    if cursor:
        with counting(engine) as nxt:
            assert (
                client.get(
                    "/v1/tasks" + query + ("&" if query else "?") + f"cursor={cursor}&limit=2", headers=auth()
                ).status_code
                == 200
            )
        assert nxt.statements == page.statements
