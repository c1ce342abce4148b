"""Warm a function up before it reports ready, so that its first requests cost what later ones do.

A process builds much on first use: secrets are looked up, each statement is compiled, the metric
instruments are made. On the local stack, tasks-api's first create took 38 ms against 8 ms for
later ones, and the creates that arrived meanwhile queued behind it (bench/README.md). Each warm-up
here runs the function's hot path for real, once per process, through a *rehearsal*: a unit of
work that sends every statement and then rolls back (``Root.rehearsal``). Nothing is written and
nothing is published.

tasks-api warms up on its first successful ``/readyz``, audit on the local stack's readiness probe
(``api/consumers.py``; recurrence and notifier only open their database connection there, being off
the create path). A warm-up that fails is logged and tried again at the next readiness check: the
requests would find the same fault for themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from taskflow import bootstrap, events, telemetry
from taskflow.api.schemas import TaskCreate
from taskflow.domain import model
from taskflow.service_layer import audit, tasks

log = logging.getLogger("taskflow.warmup")

#: The owner of the rehearsed tasks: authentication refuses an empty user id, so no real user's rows
#: (quotas, tags) are read or met.
OWNER = ""


def once(root: bootstrap.Root, name: str, warm: Callable[[bootstrap.Root], None]) -> bool:
    """Run ``warm`` until it has succeeded once for this root (this process); True once it has."""

    def build() -> bool:
        warm(root)
        return True

    try:  # the root builds a part once; a second readiness check waits for the first one's warm-up
        return root.component(f"warmed-up:{name}", build)
    except Exception as exc:
        log.warning("warming %s up failed (%s); the next readiness check tries again", name, type(exc).__name__)
        return False


def _fields(root: bootstrap.Root, tags: int = 0) -> dict[str, Any]:
    """A create as a client sends it, read through the request schema; with ``tags``, that many tags
    and as many reminders (so that the tags and reminders tables are written too)."""
    body: dict[str, Any] = {"title": "warm-up"}
    if tags:
        body |= {
            "tags": [f"warm-up-{i}" for i in range(tags)],
            "due_at": (root.clock() + timedelta(days=1)).isoformat(),
            "reminders": [{"offset": f"-PT{i + 1}H"} for i in range(tags)],
        }
    return TaskCreate.model_validate(body).to_fields()


def tasks_api(root: bootstrap.Root) -> None:
    """Authentication's secret, the metric instruments, creates, the outbox mark that follows a
    publish, and the answer's JSON.

    A statement is compiled once per shape: with or without the tag count in the quota read, and
    one row or several per insert. So three groups are rehearsed: a bare create, a create with a
    tag and a reminder, and two creates together, one of them with two of each."""
    _ = root.jwt_secret
    telemetry.instruments()
    uow = root.rehearsal()
    if uow is None:
        return
    for group in ([_fields(root)], [_fields(root, tags=1)], [_fields(root, tags=2), _fields(root)]):
        outcome = tasks.create_tasks(uow, root.clock, [(OWNER, fields) for fields in group], root.settings.quotas)
        for created in outcome:
            if isinstance(created, Exception):
                raise created
            created.to_api()
        now = root.clock()
        with uow:
            uow.outbox.mark_sent([e.id for e in uow.committed_events], now)
            uow.commit(now)


def audit_trail(root: bootstrap.Root) -> None:
    """audit's batch path on ``task.created`` events parsed from their JSON as Dapr delivers them:
    the owners' read and the audit rows' insert, for one event and for several."""
    uow = root.rehearsal("/taskflow/audit")
    if uow is None:
        root.check_database()  # what a consumer's probe did before it rehearsed
        return
    received = []
    for _ in range(2):
        task = model.Task.create(OWNER, OWNER, now=root.clock(), **_fields(root))
        body = events.task_event(task.events[0]).to_json().encode()
        received.append(events.parse({"content-type": "application/cloudevents+json"}, body))
    for batch in (received[:1], received):
        audit.record_audit_batch(uow, root.clock, batch)
