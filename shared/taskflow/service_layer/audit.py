"""The audit trail: one row per task event id, and a task's history."""

from __future__ import annotations

from typing import Any

from taskflow import events
from taskflow.domain import model
from taskflow.service_layer.ports import Clock
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork


def record_audit(uow: AbstractUnitOfWork, clock: Clock, received: events.Received) -> bool:
    """Append one audit row per event id; False when it was already recorded."""
    data = received.data
    assert isinstance(data, events.TaskEventData)
    now = clock()
    with uow:
        task = uow.tasks.get_any(data.task.id)
        added = uow.audit.append(
            {
                "event_id": received.id,
                "task_id": data.task.id,
                "owner_id": task.owner_id if task is not None else data.actor,
                "type": received.type,
                "time": model.parse_time(data.task.updated_at),
                "actor": data.actor,
                "changes": data.changes,
                "recorded_at": now,
            }
        )
        uow.commit(now)
    return added


def record_audit_batch(uow: AbstractUnitOfWork, clock: Clock, batch: list[events.Received]) -> list[bool]:
    """Append the audit rows of a batch of events in one transaction (one SELECT for their tasks'
    owners, one multi-row INSERT that skips event ids already recorded); True per newly recorded."""
    now = clock()
    with uow:
        owners = uow.tasks.owners({_data(r).task.id for r in batch})
        rows: dict[str, dict[str, Any]] = {}
        for received in batch:
            data = _data(received)
            rows.setdefault(
                received.id,
                {
                    "event_id": received.id,
                    "task_id": data.task.id,
                    "owner_id": owners.get(data.task.id, data.actor),
                    "type": received.type,
                    "time": model.parse_time(data.task.updated_at),
                    "actor": data.actor,
                    "changes": data.changes,
                    "recorded_at": now,
                },
            )
        added = uow.audit.append_many(list(rows.values()))
        uow.commit(now)
    first = {r.id: i for i, r in reversed(list(enumerate(batch)))}
    return [received.id in added and first[received.id] == i for i, received in enumerate(batch)]


def _data(received: events.Received) -> events.TaskEventData:
    data = received.data
    assert isinstance(data, events.TaskEventData)
    return data


def history(uow: AbstractUnitOfWork, owner_id: str, task_id: str) -> list[dict[str, Any]]:
    with uow:
        rows = uow.audit.history(task_id, owner_id)
    return [
        {
            "event_id": r["event_id"],
            "type": r["type"],
            "time": model.format_time(r["time"]),
            "actor": r["actor"],
            "changes": r["changes"],
        }
        for r in rows
    ]
