"""Warming up before ready (``api/warmup.py``): tasks-api's first ``/readyz`` and audit's readiness
probe rehearse their hot paths (every statement sent, then rolled back), so a new process's first
requests compile no statement and find their secrets looked up. Nothing the rehearsal writes stays.

Each test runs on an engine of its own: its compiled-statement cache starts empty, as in a new
process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from taskflow import config
from taskflow.adapters import db, tables
from taskflow.api.consumers import PROBE_TYPE
from taskflow.bootstrap import Root
from taskflow.domain import model
from taskflow.embedded import Embedded
from tests.conftest import Clock, auth
from tests.functions.test_bulk_delivery import bulk
from tests.functions.test_consumers import count, task_event
from tests.functions.test_statement_counts import FULL_TASK, counting
from tests.functions.test_tasks_api import create

JSON = {"content-type": "application/json"}
WRITTEN = (tables.tasks, tables.task_tags, tables.reminders, tables.outbox, tables.audit_log)


@pytest.fixture
def fresh(env: str, clock: Clock) -> Iterator[Embedded]:
    """Embedded mode on a new engine: nothing compiled yet, as in a process that just started."""
    engine = db.build_engine(env)
    emb = Embedded(root=Root(config.load(), clock=clock, engine=engine)).start(timers=False)
    try:
        yield emb
    finally:
        emb.stop()
        engine.dispose()


def test_tasks_api_rehearses_creates_on_its_first_readyz_and_keeps_nothing(fresh: Embedded) -> None:
    api = fresh.apps["tasks-api"].test_client()
    engine = fresh.root.engine
    with counting(engine) as warm:
        assert api.get("/readyz").get_json() == {"status": "ready"}
    assert any(s.startswith("INSERT INTO tasks ") for s in warm.sent)  # a create was rehearsed
    assert [count(fresh, table) for table in WRITTEN] == [0] * len(WRITTEN)  # and rolled back

    with counting(engine) as again:
        assert api.get("/readyz").status_code == 200
    assert len(again.statements) == 1  # the database check only: the warm-up ran once

    with counting(engine) as first:
        full = create(api, **FULL_TASK)  # tags, a due date, two reminders
        bare = create(api, user="bob")
    # the full create: quota read, then task, tags, reminders, outbox; the bare one has no tags or reminders
    full_create, bare_create = ["SELECT", "INSERT", "INSERT", "INSERT", "INSERT"], ["SELECT", "INSERT", "INSERT"]
    assert first.statements == full_create + bare_create
    assert first.compiled == []  # nothing left to compile on the first requests
    listed = api.get("/v1/tasks", headers=auth()).get_json()["items"]
    assert [t["id"] for t in listed] == [full["id"]]
    assert count(fresh, tables.tasks) == 2 and bare["title"] == "task"


def test_without_the_warm_up_the_first_create_compiles_its_statements(fresh: Embedded) -> None:
    """The control: what the rehearsal saves a new process's first create."""
    with counting(fresh.root.engine) as first:
        create(fresh.apps["tasks-api"].test_client(), **FULL_TASK)
    assert first.compiled != []


def test_audits_readiness_probe_rehearses_a_batch_and_keeps_nothing(fresh: Embedded) -> None:
    audit = fresh.apps["audit"].test_client()
    engine = fresh.root.engine
    probe = {"specversion": "1.0", "id": "probe-1", "type": PROBE_TYPE, "source": "/taskflow/stack", "data": {}}
    with counting(engine) as warm:
        body, _ = bulk(probe)
        resp = audit.post("/events/task-events", data=json.dumps(body), headers=JSON)
    assert [s["status"] for s in resp.get_json()["statuses"]] == ["SUCCESS"]
    assert any(s.startswith("INSERT INTO audit_log ") for s in warm.sent)
    assert count(fresh, tables.audit_log) == 0

    task = model.Task.create("alice", "alice", title="audited").to_api()  # the events' task (audit needs no row of it)
    with counting(engine) as first:
        body, _ = bulk(task_event(task), task_event(task))  # one event, and a batch of two
        resp = audit.post("/events/task-events", data=json.dumps(body), headers=JSON)
        assert [s["status"] for s in resp.get_json()["statuses"]] == ["SUCCESS", "SUCCESS"]
        body, _ = bulk(task_event(task))
        audit.post("/events/task-events", data=json.dumps(body), headers=JSON)
    assert first.statements and first.compiled == []
    assert count(fresh, tables.audit_log) == 3
