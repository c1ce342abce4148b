"""Hostile deliveries to the event consumers (audit, recurrence, notifier), property-based with
hypothesis, in both CloudEvents content modes and both delivery contracts:

- a valid event is applied once: SUCCESS, and a replay of its id is SUCCESS with nothing new;
- poison (malformed, truncated, oversized, wrong types, missing attributes) is answered so that the
  sender dead-letters it without retrying (Dapr: 200 DROP; Knative: 400 problem), writes nothing,
  and is answered so even while the database is down;
- only a transient fault (the database unreachable) is answered RETRY.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select

from taskflow import events
from taskflow.adapters import tables
from tests.conftest import auth

ROUTES = {
    "audit": "/events/task-events",
    "recurrence": "/events/task-completed",
    "notifier": "/events/reminders",
}
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # CI is repeatable; change the settings locally to explore
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def structured(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(event, separators=(",", ":")).encode(), {"content-type": "application/cloudevents+json"}


def binary(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = "application/json"
    return json.dumps(event["data"], separators=(",", ":")).encode(), headers


MODES = {"structured": structured, "binary": binary}


@pytest.fixture(params=["dapr", "knative"])
def world(request: pytest.FixtureRequest, make_app: Any) -> dict[str, Any]:
    """Embedded mode with one recurring task of alice's, completed; its events drained."""
    app = make_app(event_delivery=request.param)
    client = app.apps["tasks-api"].test_client()
    body = {"title": "water plants", "due_at": "2031-01-06T09:00:00Z", "recurrence": {"rule": "FREQ=WEEKLY"}}
    task = client.post("/v1/tasks", json=body, headers=auth()).get_json()
    done = client.post(f"/v1/tasks/{task['id']}/complete", headers=auth()).get_json()
    app.bus.drain()
    return {"app": app, "delivery": request.param, "completed": done}


def _event(world: dict[str, Any], consumer: str) -> dict[str, Any]:
    """A valid event for ``consumer`` with a new id."""
    base = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/tests", "datacontenttype": "application/json"}
    task = world["completed"]
    if consumer == "notifier":
        data = {
            "reminder_id": str(uuid.uuid4()),
            "task_id": task["id"],
            "owner_id": "alice",
            "title": "water plants",
            "fire_at": "2031-01-06T08:45:00Z",
            "late": False,
        }
        return {**base, "type": events.REMINDER_DUE, "subject": task["id"], "data": data}
    etype = events.TASK_COMPLETED if consumer == "recurrence" else events.TASK_UPDATED
    return {**base, "type": etype, "subject": task["id"], "data": {"task": task, "actor": "alice", "changes": {}}}


def _writes(app: Any) -> dict[str, int]:
    with app.root.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (tables.tasks, tables.audit_log, tables.notifications, tables.outbox, tables.reminders)
        }


def _post(app: Any, consumer: str, body: bytes, headers: dict[str, str]) -> Any:
    return app.apps[consumer].test_client().post(ROUTES[consumer], data=body, headers=headers)


def _assert_dead_lettered(world: dict[str, Any], resp: Any) -> None:
    """The documented answer to poison: not retried, handed to the dead-letter topic or sink."""
    if world["delivery"] == "dapr":
        assert (resp.status_code, resp.get_json(silent=True)) == (200, {"status": "DROP"}), resp.get_data()[:300]
    else:
        assert resp.status_code == 400, resp.get_data()[:300]
        assert resp.mimetype == "application/problem+json"


# --- poison --------------------------------------------------------------------------------

CONSUMERS = st.sampled_from(sorted(ROUTES))


def _mutations(event: dict[str, Any]) -> list[tuple[list[str], bool]]:
    """Paths into the event that a wrong-typed or missing value makes invalid (path, may delete)."""
    paths: list[tuple[list[str], bool]] = [([k], True) for k in ("id", "type", "source", "specversion")]
    data = event["data"]
    if "task" in data:
        paths += [(["data", "task"], True), (["data", "actor"], True)]
        required = ("id", "title", "status", "priority", "tags", "timezone", "occurrence", "created_at", "version")
        paths += [(["data", "task", k], True) for k in required]
        paths += [(["data", "task", k], False) for k in ("due_at", "completed_at", "recurrence", "reminders")]
    else:
        paths += [(["data", k], True) for k in ("reminder_id", "task_id", "owner_id", "title", "fire_at")]
    return paths


@st.composite
def poisoned(draw: st.DrawFn, event: dict[str, Any]) -> tuple[str, dict[str, Any] | bytes]:
    """A poisoned copy of ``event`` (a dict to encode in either mode, or raw bytes) and what was done."""
    kind = draw(st.sampled_from(["wrong type", "missing", "unknown type", "garbage", "truncated", "bad time"]))
    ev = json.loads(json.dumps(event))
    if kind == "garbage":
        return kind, draw(st.binary(max_size=300))
    if kind == "truncated":
        text = json.dumps(ev, separators=(",", ":")).encode()
        return kind, text[: draw(st.integers(0, len(text) - 2))]
    if kind == "unknown type":
        ev["type"] = draw(st.sampled_from(["", "com.taskflow.task.exploded.v1", "com.example.other"]))
        return kind, ev
    if kind == "bad time":
        key = draw(st.sampled_from(["due_at", "completed_at", "updated_at"])) if "task" in ev["data"] else "fire_at"
        target = ev["data"]["task"] if "task" in ev["data"] else ev["data"]
        target[key] = draw(st.sampled_from(["yesterday", "2031-13-45T99:00:00Z", "0", "2031-01-06"]))
        return kind, ev
    path, deletable = draw(st.sampled_from(_mutations(ev)))
    parent = ev
    for key in path[:-1]:
        parent = parent[key]
    if kind == "missing" and deletable:
        del parent[path[-1]]
    else:
        # A JSON object is the wrong type for every scalar and list field, and misses the required
        # members of every object field. (An attribute can only be mistyped in structured mode: a
        # binary event's attributes are HTTP headers, text by nature.)
        kind = "wrong type" if len(path) > 1 else "wrong attribute type"
        parent[path[-1]] = {"unexpected": draw(JSON)}
    return kind, ev


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@HYPOTHESIS
@given(data=st.data(), consumer=CONSUMERS, mode=st.sampled_from(sorted(MODES)))
def test_poison_is_dead_lettered_and_writes_nothing(world: dict[str, Any], data: Any, consumer: str, mode: str) -> None:
    app = world["app"]
    kind, poison = data.draw(poisoned(_event(world, consumer)), label="poison")
    if isinstance(poison, bytes):
        body, headers = poison, ({"content-type": "application/cloudevents+json"})
        if mode == "binary":
            headers = binary(_event(world, consumer))[1]  # valid attributes, broken data
    else:
        if kind == "wrong attribute type" or "data" not in poison:
            mode = "structured"
        body, headers = MODES[mode](poison)
    before = _writes(app)
    resp = _post(app, consumer, body, headers)
    app.bus.drain()
    _assert_dead_lettered(world, resp)
    assert _writes(app) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("consumer", sorted(ROUTES))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_oversized_event_is_dead_lettered(world: dict[str, Any], consumer: str, mode: str) -> None:
    """Over the broker's 1 MiB message limit (maxMessageBytes): poison, whatever else it says."""
    event = _event(world, consumer)
    event["data"]["padding"] = "x" * (1024 * 1024)
    body, headers = MODES[mode](event)
    before = _writes(world["app"])
    _assert_dead_lettered(world, _post(world["app"], consumer, body, headers))
    assert _writes(world["app"]) == before


# --- valid events and replays ----------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@HYPOTHESIS
@given(consumer=CONSUMERS, modes=st.lists(st.sampled_from(sorted(MODES)), min_size=1, max_size=4))
def test_a_valid_event_is_applied_once_however_often_and_however_it_is_sent(
    world: dict[str, Any], consumer: str, modes: list[str]
) -> None:
    app = world["app"]
    event = _event(world, consumer)
    for mode in modes:
        resp = _post(app, consumer, *MODES[mode](event))
        app.bus.drain()
        assert (resp.status_code, resp.get_json()) == (200, {"status": "SUCCESS"})
    with app.root.engine.connect() as conn:
        if consumer == "audit":
            rows = conn.execute(
                select(func.count()).select_from(tables.audit_log).where(tables.audit_log.c.event_id == event["id"])
            ).scalar_one()
            assert rows == 1
        elif consumer == "notifier":
            rows = conn.execute(
                select(func.count())
                .select_from(tables.notifications)
                .where(tables.notifications.c.event_id == event["id"])
            ).scalar_one()
            assert rows == 1
        else:  # however many completed events of occurrence 1 arrive, one occurrence 2 exists
            series = world["completed"]["series_id"] or world["completed"]["id"]
            rows = conn.execute(
                select(func.count())
                .select_from(tables.tasks)
                .where(tables.tasks.c.series_id == series, tables.tasks.c.occurrence == 2)
            ).scalar_one()
            assert rows == 1


# --- transient faults --------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("consumer", sorted(ROUTES))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_only_a_transient_fault_is_retried(world: dict[str, Any], consumer: str, mode: str) -> None:
    """With the database unreachable (a real refused connection) a valid event is RETRY, and poison
    is still dead-lettered: a retry could never fix it."""
    app = world["app"]
    event = _event(world, consumer)
    if consumer == "audit":
        event["id"] = str(uuid.uuid4())
    dead = create_engine("postgresql+pg8000://nobody:x@127.0.0.1:1/none", pool_pre_ping=False)
    real = app.root.engine
    app.root.use(engine=dead)
    try:
        resp = _post(app, consumer, *MODES[mode](event))
        assert resp.status_code >= 500 and resp.get_json() == {"status": "RETRY"}
        poison = dict(event, data={"nothing": "useful"})
        _assert_dead_lettered(world, _post(app, consumer, *MODES[mode](poison)))
    finally:
        app.root.use(engine=real)
        dead.dispose()
    resp = _post(app, consumer, *MODES[mode](event))  # the redelivery once the database is back
    assert (resp.status_code, resp.get_json()) == (200, {"status": "SUCCESS"})


# --- bulk deliveries (audit's bulkSubscribe) ---------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@HYPOTHESIS
@given(data=st.data(), plan=st.lists(st.sampled_from(["valid", "replay", "poison"]), min_size=1, max_size=8))
def test_a_bulk_delivery_is_answered_per_entry_and_poison_writes_nothing(
    world: dict[str, Any], data: Any, plan: list[str]
) -> None:
    """Valid entries SUCCESS and recorded once (a replayed id too), poison entries DROP, and
    nothing but the valid entries' audit rows is written."""
    app = world["app"]
    entries, expected, valid_ids = [], {}, []
    for i, kind in enumerate(plan):
        entry_id = f"e{i}"
        if kind == "replay" and valid_ids:
            event: Any = dict(_event(world, "audit"), id=valid_ids[0])
        elif kind == "poison":
            _, poison = data.draw(poisoned(_event(world, "audit")), label=f"entry {i}")
            event = poison.decode("utf-8", "replace") if isinstance(poison, bytes) else poison
        else:
            event = _event(world, "audit")
        if kind != "poison":
            valid_ids.append(event["id"])
        expected[entry_id] = "DROP" if kind == "poison" else "SUCCESS"
        entries.append({"entryId": entry_id, "event": event, "contentType": "application/cloudevents+json"})
    body = {"id": str(uuid.uuid4()), "entries": entries, "topic": "task-events", "type": "com.dapr.event.sent.bulk"}
    before = _writes(app)
    resp = (
        app.apps["audit"]
        .test_client()
        .post(ROUTES["audit"], data=json.dumps(body), headers={"content-type": "application/json"})
    )
    assert resp.status_code == 200
    assert {s["entryId"]: s["status"] for s in resp.get_json()["statuses"]} == expected
    after = _writes(app)
    assert after == {**before, "audit_log": before["audit_log"] + len(set(valid_ids))}
