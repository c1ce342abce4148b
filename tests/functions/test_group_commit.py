"""Group commit (TASKFLOW_GROUP_COMMIT): creates that arrive while another is being written go to
the database together, in one transaction, through the real route, on SQLite and PostgreSQL.

The first create is held after its commit (its publish waits) until the others have queued, so
the grouping is deterministic: one group of one, then one group of the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event

from taskflow.domain.limits import Quotas
from taskflow.service_layer import outbox
from taskflow.service_layer.group_commit import GroupCommit
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork
from tests.conftest import auth

GROUP = 6


class _Held:
    """The root's group commit, with the first group's publish held until ``release`` is set."""

    def __init__(self, app: Any, quotas: Quotas | None = None) -> None:
        root = app.root
        self.app = app
        self.held = threading.Event()
        self.release = threading.Event()

        def publish(uow: AbstractUnitOfWork) -> None:
            if not self.held.is_set():
                self.held.set()
                assert self.release.wait(30)
            outbox.publish_committed(uow, root.publisher, root.clock)

        self.gc = root.component("group_commit", lambda: GroupCommit(root.uow, root.clock, publish, quotas))

    def create_concurrently(self, bodies: list[dict[str, Any]]) -> list[Any]:
        """POST ``bodies`` from threads: the first alone, the rest while it is held."""
        client = self.app.apps["tasks-api"].test_client

        def post(body: dict[str, Any]) -> Any:
            return client().post("/v1/tasks", json=body, headers=auth())

        with ThreadPoolExecutor(len(bodies)) as pool:
            futures = [pool.submit(post, bodies[0])]
            assert self.held.wait(30)
            futures += [pool.submit(post, b) for b in bodies[1:]]
            deadline = time.monotonic() + 30
            while self.gc.waiting < len(bodies) - 1:
                assert time.monotonic() < deadline, f"only {self.gc.waiting} creates queued"
                time.sleep(0.005)
            self.release.set()
            return [f.result(30) for f in futures]


def _counting(engine: Any, threads: set[int]) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() in threads and not statement.lstrip().upper().startswith("BEGIN"):
            seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", on_execute)
    return seen, lambda: event.remove(engine, "before_cursor_execute", on_execute)


def test_concurrent_creates_share_one_transaction_and_each_gets_its_task(make_app: Callable[..., Any]) -> None:
    app = make_app(group_commit=True)
    held = _Held(app)
    bodies = [{"title": f"task {i}", "tags": ["work", f"t{i}"], "due_at": "2030-01-01T09:00:00Z"} for i in range(GROUP)]
    bodies[1]["reminders"] = [{"offset": "-PT1H"}]

    responses = held.create_concurrently(bodies)

    assert [r.status_code for r in responses] == [201] * GROUP
    made = [r.get_json() for r in responses]
    assert [t["title"] for t in made] == [b["title"] for b in bodies]  # each request its own task
    assert len({t["id"] for t in made}) == GROUP
    assert (held.gc.groups, held.gc.grouped) == (2, GROUP)  # one alone, then the five that queued behind it
    app.bus.drain(10)
    client = app.apps["tasks-api"].test_client()
    for task, body in zip(made, bodies, strict=True):
        got = client.get(f"/v1/tasks/{task['id']}", headers=auth()).get_json()
        assert got["tags"] == body["tags"]
        history = client.get(f"/v1/tasks/{task['id']}/history", headers=auth()).get_json()["items"]
        assert [h["type"].rsplit(".", 2)[-2] for h in history] == ["created"]  # its event was published
    assert len(made[1]["reminders"]) == 1


def test_a_group_costs_the_statements_of_one_create(make_app: Callable[..., Any]) -> None:
    app = make_app(group_commit=True)
    held = _Held(app, Quotas())  # the quotas in force: their check is the group's one SELECT
    full = {"tags": ["a", "b"], "reminders": [{"offset": "-PT1H"}], "due_at": "2030-01-01T09:00:00Z"}
    bodies = [{"title": f"task {i}", **full} for i in range(GROUP)]
    threads: set[int] = set()
    real_uow = app.root.uow

    def uow() -> AbstractUnitOfWork:  # the threads that write groups
        threads.add(threading.get_ident())
        return real_uow()

    held.gc._uow = uow
    seen, stop = _counting(app.root.engine, threads)
    try:
        responses = held.create_concurrently(bodies)
    finally:
        stop()
    assert [r.status_code for r in responses] == [201] * GROUP
    # Both groups: the quota check, then one INSERT each of tasks, tags, reminders and outbox rows.
    one_group = ["SELECT", "INSERT", "INSERT", "INSERT", "INSERT"]
    assert [s for s in seen if s != "COMMIT"] == one_group * 2


def test_a_create_over_its_quota_is_refused_alone_and_writes_nothing(make_app: Callable[..., Any]) -> None:
    quotas = Quotas(open_tasks=GROUP - 2)
    app = make_app(group_commit=True, quotas=quotas)
    held = _Held(app, quotas)
    bodies = [{"title": f"task {i}"} for i in range(GROUP)]

    responses = held.create_concurrently(bodies)

    codes = [r.status_code for r in responses]
    assert codes.count(201) == GROUP - 2
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == 2
    assert all(r.headers["Content-Type"] == "application/problem+json" for r in refused)
    listed = app.apps["tasks-api"].test_client().get("/v1/tasks?limit=100", headers=auth()).get_json()["items"]
    assert sorted(t["title"] for t in listed) == sorted(
        r.get_json()["title"] for r in responses if r.status_code == 201
    )


def test_a_group_the_database_fails_is_written_create_by_create(make_app: Callable[..., Any]) -> None:
    app = make_app(group_commit=True)
    held = _Held(app)
    real_uow = app.root.uow
    failed: list[int] = []

    class FailingGroupUow:
        """The second group's transaction fails at its commit, as a dropped connection would."""

        def __init__(self) -> None:
            self.inner = real_uow()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __enter__(self) -> Any:
            self.inner.__enter__()
            return self

        def __exit__(self, *exc: Any) -> None:
            self.inner.__exit__(*exc)

        def commit(self, now: Any) -> None:
            if len(self.inner.tasks.seen) > 1 and not failed:
                failed.append(len(self.inner.tasks.seen))
                raise ConnectionError("connection lost")
            self.inner.commit(now)

    held.gc._uow = FailingGroupUow  # type: ignore[assignment]
    bodies = [{"title": f"task {i}"} for i in range(GROUP)]

    responses = held.create_concurrently(bodies)

    assert failed == [GROUP - 1]  # the group of the five queued creates failed once
    assert [r.status_code for r in responses] == [201] * GROUP  # then each was written alone
    listed = app.apps["tasks-api"].test_client().get("/v1/tasks?limit=100", headers=auth()).get_json()["items"]
    assert sorted(t["title"] for t in listed) == sorted(b["title"] for b in bodies)  # once each
