"""Import of iCalendar VTODOs: one task per UID and user, created once and updated afterwards.

Each batch is one transaction whose task events reach the outbox like any create or update; an
item that cannot be imported is reported with its reason and never stops the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskflow.domain import limits, model
from taskflow.domain.ical import ImportedTodo, SkippedTodo
from taskflow.service_layer.ports import Clock
from taskflow.service_layer.tasks import arm_reminders
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

BATCH = 100
UID_MAX = 255
# the series id of imported occurrences whose first occurrence is not among the user's tasks
_SERIES_NAMESPACE = uuid.UUID("5a1f6c2e-3b1d-4f0e-9a43-7d2c1e8b9f60")


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[dict[str, str | None]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "skipped": self.skipped}


def batches(
    items: Sequence[ImportedTodo | SkippedTodo], size: int = BATCH
) -> list[Sequence[ImportedTodo | SkippedTodo]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def import_batch(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    items: Sequence[ImportedTodo | SkippedTodo],
    result: ImportResult,
    quotas: limits.Quotas | None = None,
) -> ImportResult:
    """Apply one batch in one transaction, adding its counts to ``result``. With ``quotas``, an
    item that would go over the user's open-task or tag limit is skipped, saying which limit."""
    now = clock()
    seen_uids: set[str] = set()
    with uow:
        usage = uow.tasks.usage(owner_id, with_tags=True) if quotas is not None else None

        def admit(opens: bool, tags: list[str]) -> None:
            nonlocal usage
            if quotas is None or usage is None:
                return
            limits.check(usage, quotas, new_open=int(opens), tags=tags)
            usage = limits.Usage(usage.open_tasks + int(opens), usage.tags | frozenset(tags))

        for item in items:
            if isinstance(item, SkippedTodo):
                result.skipped.append({"uid": item.uid, "reason": item.reason})
                continue
            if len(item.uid) > UID_MAX:
                result.skipped.append({"uid": item.uid[:UID_MAX], "reason": f"UID longer than {UID_MAX} characters"})
                continue
            if item.uid in seen_uids:
                result.skipped.append({"uid": item.uid, "reason": "the UID appears twice in this file"})
                continue
            seen_uids.add(item.uid)
            try:
                outcome = _apply(uow, owner_id, item, now, admit)
            except ValueError as exc:  # InvalidTask, a broken value: this item only
                result.skipped.append({"uid": item.uid, "reason": str(exc)})
                continue
            except limits.LimitExceeded as exc:
                result.skipped.append({"uid": item.uid, "reason": f"{exc.message} (limit {exc.limit.name})"})
                continue
            setattr(result, outcome, getattr(result, outcome) + 1)
        uow.commit(now)
    return result


def _existing(uow: AbstractUnitOfWork, owner_id: str, uid: str) -> model.Task | None:
    """The task this user's UID stands for: one imported before, or the user's own task (re-import)."""
    for task_id in (uow.data.imported_task(owner_id, uid), uid):
        if task_id is None:
            continue
        try:
            return uow.tasks.get(owner_id, task_id, for_update=True)
        except model.NotFound:
            continue
    return None


def _series(uow: AbstractUnitOfWork, owner_id: str, item: ImportedTodo) -> dict[str, Any]:
    """A later occurrence joins the series of the item its ``RELATED-TO`` names, as this user has
    it (imported before, in this file or earlier, or the user's own task); when the user has no
    such task, a series id of its own derived from that UID, so a re-import finds the same one."""
    if item.series_of is None:
        return {}
    head = _existing(uow, owner_id, item.series_of)
    if head is not None and head.series_id is not None:
        series_id, start = head.series_id, head.series_start or head.due_at
    else:
        series_id, start = str(uuid.uuid5(_SERIES_NAMESPACE, f"{owner_id}\n{item.series_of}")), None
    return {"series_id": series_id, "occurrence": item.occurrence or 2, "series_start": start}


def _apply(
    uow: AbstractUnitOfWork, owner_id: str, item: ImportedTodo, now: Any, admit: Callable[[bool, list[str]], None]
) -> str:
    task = _existing(uow, owner_id, item.uid)
    tags = list(item.fields.get("tags") or [])
    if task is None:
        admit(item.completed_at is None, tags)
        fields = dict(item.fields)
        if item.completed_at is not None:
            # Created as completed (one created event): the recurrence function creates no next one.
            fields.update(status=model.Status.COMPLETED, completed_at=item.completed_at)
        fields.update(_series(uow, owner_id, item))
        task = model.Task.create(owner_id, owner_id, now=now, **fields)
        if not uow.tasks.add(task):
            raise ValueError(f"occurrence {task.occurrence} of its series exists already")
        arm_reminders(uow, task, now)
        uow.data.remember_import(owner_id, item.uid, task.id, now)
        return "created"
    admit(task.status is model.Status.COMPLETED and item.completed_at is None, tags)
    changed = bool(task.update(owner_id, item.fields, now))
    if item.completed_at is not None:
        changed = task.complete(owner_id, now) or changed
    else:
        changed = task.reopen(owner_id, now) or changed
    if not changed:
        return "unchanged"
    uow.tasks.save(task)
    arm_reminders(uow, task, now)
    return "updated"
