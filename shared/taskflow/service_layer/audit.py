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
