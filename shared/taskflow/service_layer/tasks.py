"""Task use cases: each takes a unit of work and a clock, commits once; the events the task
recorded reach the outbox through the unit of work (publish them with ``outbox.publish_committed``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from taskflow.domain import limits, model
from taskflow.domain.query import TaskQuery
from taskflow.service_layer.ports import Clock
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork


def arm_reminders(
    uow: AbstractUnitOfWork, task: model.Task, now: datetime, deleted: bool = False, *, new: bool = False
) -> None:
    """Re-arm the task's reminders after a change (the schedule is the domain's rule). A ``new``
    task has no reminder rows yet: nothing to ask about or to replace, and no statement when it
    has no reminders."""
    if new:
        schedule = task.reminder_schedule(now, set)
        if schedule:
            uow.reminders.replace_pending(task, schedule, now, new=True)
        return
    schedule = [] if deleted else task.reminder_schedule(now, lambda: uow.reminders.armed(task.id))
    uow.reminders.replace_pending(task, schedule, now)


def _schedule_inputs(task: model.Task) -> tuple[Any, ...]:
    """What a task's reminder schedule depends on (besides the clock)."""
    return task.status, task.due_at, tuple(task.reminders)


def create_task(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    fields: dict[str, Any],
    quotas: limits.Quotas | None = None,
    task_id: str | None = None,
) -> model.Task:
    """Create a task (``create_tasks`` with one request); with ``quotas``, LimitExceeded (nothing
    written) when the user is at one."""
    (outcome,) = create_tasks(
        uow, clock, [(owner_id, fields if task_id is None else {**fields, "task_id": task_id})], quotas
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def create_tasks(
    uow: AbstractUnitOfWork,
    clock: Clock,
    requests: Sequence[tuple[str, dict[str, Any]]],
    quotas: limits.Quotas | None = None,
) -> list[model.Task | limits.LimitExceeded | model.InvalidTask]:
    """Create several users' tasks in one transaction and one commit (group commit): each request
    ``(owner, fields)`` is checked against its user's quotas as if the requests before it were
    already written; one that would go over, or breaks a task invariant, is refused (its slot
    holds the LimitExceeded or InvalidTask) and writes nothing. The others are one INSERT each of
    tasks, tags, reminders and outbox rows, whatever their number."""
    now = clock()
    outcome: list[model.Task | limits.LimitExceeded | model.InvalidTask] = []
    with uow:
        usage: dict[str, limits.Usage] = {}
        tagging = {owner_id for owner_id, fields in requests if fields.get("tags")}  # the tag count costs a scan
        for owner_id, fields in requests:
            tags = list(fields.get("tags") or [])
            try:
                if quotas is not None:
                    if owner_id not in usage:
                        usage[owner_id] = uow.tasks.usage(owner_id, with_tags=owner_id in tagging)
                    limits.check(usage[owner_id], quotas, new_open=1, tags=tags)
                task = model.Task.create(owner_id, owner_id, now=now, **fields)
            except (limits.LimitExceeded, model.InvalidTask) as exc:
                outcome.append(exc)
                continue
            if quotas is not None:
                held = usage[owner_id]
                usage[owner_id] = limits.Usage(held.open_tasks + 1, held.tags | frozenset(tags))
            outcome.append(task)
        created = [t for t in outcome if isinstance(t, model.Task)]
        uow.tasks.add_new(created)
        schedules = [(t, t.reminder_schedule(now, set)) for t in created]
        uow.reminders.add_pending([(t, s) for t, s in schedules if s], now)
        uow.commit(now)
    return outcome


def create_task_once(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    task_id: str,
    fields: dict[str, Any],
    quotas: limits.Quotas | None = None,
) -> tuple[model.Task, bool]:
    """Create the task with this id unless it exists: ``(task, created)``. An id derived from an
    Idempotency-Key makes a retry whose first attempt committed (and then lost its answer, or its
    idempotency record) find that task instead of writing a second one. Two attempts that both
    find no task race to insert it: the loser's insert fails on the id, and it answers the
    winner's task."""

    def existing() -> model.Task | None:
        with uow:
            task = uow.tasks.get_any(task_id)
        if task is not None and task.owner_id != owner_id:
            raise model.NotFound(task_id)
        return task

    found = existing()
    if found is not None:
        return found, False
    try:
        return create_task(uow, clock, owner_id, fields, quotas, task_id), True
    except (limits.LimitExceeded, model.InvalidTask):
        raise
    except Exception:
        found = existing()
        if found is None:
            raise
        return found, False


def _check_etag(task: model.Task, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return
    weakless = {t[2:] if t.startswith("W/") else t for t in tags}
    if task.etag not in weakless:
        raise model.PreconditionFailed(task.etag)


def _change(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    task_id: str,
    if_match: str | None,
    apply: Callable[[model.Task, datetime], bool],
) -> model.Task:
    """Load for update, check If-Match, apply; save and record only when something changed, and
    re-arm reminders only when what they depend on changed (a task that never had reminders has
    no pending rows to replace)."""
    now = clock()
    with uow:
        task = uow.tasks.get(owner_id, task_id, for_update=True)
        _check_etag(task, if_match)
        before = _schedule_inputs(task)
        if apply(task, now):
            uow.tasks.save(task)
            if _schedule_inputs(task) != before:
                arm_reminders(uow, task, now, new=not before[2])
            uow.commit(now)
    return task


def update_task(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    task_id: str,
    changes: dict[str, Any],
    if_match: str | None,
    quotas: limits.Quotas | None = None,
) -> model.Task:
    def apply(task: model.Task, now: datetime) -> bool:
        new_tags = [t for t in changes.get("tags") or [] if t not in task.tags]
        if quotas is not None and new_tags:
            limits.check(uow.tasks.usage(owner_id, with_tags=True), quotas, new_open=0, tags=new_tags)
        return bool(task.update(owner_id, changes, now))

    return _change(uow, clock, owner_id, task_id, if_match, apply)


def complete_task(
    uow: AbstractUnitOfWork, clock: Clock, owner_id: str, task_id: str, if_match: str | None
) -> model.Task:
    """Completing a completed task answers it as is, with no event."""
    return _change(uow, clock, owner_id, task_id, if_match, lambda t, now: t.complete(owner_id, now))


def reopen_task(
    uow: AbstractUnitOfWork,
    clock: Clock,
    owner_id: str,
    task_id: str,
    if_match: str | None,
    quotas: limits.Quotas | None = None,
) -> model.Task:
    def apply(task: model.Task, now: datetime) -> bool:
        if quotas is not None and task.status is model.Status.COMPLETED:
            limits.check(uow.tasks.usage(owner_id, with_tags=False), quotas, new_open=1, tags=[])
        return task.reopen(owner_id, now)

    return _change(uow, clock, owner_id, task_id, if_match, apply)


def delete_task(uow: AbstractUnitOfWork, clock: Clock, owner_id: str, task_id: str, if_match: str | None) -> None:
    now = clock()
    with uow:
        task = uow.tasks.get(owner_id, task_id, for_update=True)
        _check_etag(task, if_match)
        task.delete(owner_id, now)
        uow.tasks.mark_deleted(task, now)
        arm_reminders(uow, task, now, deleted=True)
        uow.commit(now)


def get_task(uow: AbstractUnitOfWork, owner_id: str, task_id: str) -> model.Task:
    with uow:
        return uow.tasks.get(owner_id, task_id)


def list_tasks(
    uow: AbstractUnitOfWork, clock: Clock, owner_id: str, query: TaskQuery
) -> tuple[list[model.Task], str | None]:
    with uow:
        return uow.tasks.list(owner_id, query, clock())


def tag_counts(uow: AbstractUnitOfWork, owner_id: str) -> list[tuple[str, int]]:
    with uow:
        return uow.tasks.tag_counts(owner_id)


def _as_completed(current: model.Task, snapshot: Any) -> model.Task:
    """The occurrence as it was completed (the event's snapshot), in its series as stored now."""
    current.series_id = current.series_id or current.id
    current.due_at = model.parse_time(snapshot.due_at)
    current.completed_at = model.parse_time(snapshot.completed_at)
    current.occurrence = snapshot.occurrence
    current.recurrence = model.Recurrence.from_json(snapshot.recurrence.model_dump())
    current.events.clear()
    return current


def create_next_occurrence(uow: AbstractUnitOfWork, clock: Clock, received: Any) -> model.Task | None:
    """On ``task.completed`` of a recurring task create occurrence N+1, exactly once.

    ``received.data`` is the event's ``TaskEventData``; returns the new task, or None when there is
    none to create (not recurring, series ended, deleted, or already created)."""
    snapshot = received.data.task
    if snapshot.recurrence is None or snapshot.due_at is None or snapshot.completed_at is None:
        return None
    now = clock()
    with uow:
        current = uow.tasks.get_any(snapshot.id, include_deleted=False)
        if current is None:
            return None  # deleting an occurrence ends the series
        series_id = current.series_id or current.id
        if uow.tasks.series_has(series_id, snapshot.occurrence + 1):
            return None  # duplicate delivery, or completed again after a reopen
        nxt = _as_completed(current, snapshot).next_occurrence(received.data.actor, now)
        if nxt is None or not uow.tasks.add(nxt):
            return None  # the series has ended, or a concurrent delivery created it
        arm_reminders(uow, nxt, now, new=True)
        uow.commit(now)
    return nxt


def create_next_occurrences(uow: AbstractUnitOfWork, clock: Clock, batch: list[Any]) -> list[model.Task | None]:
    """``create_next_occurrence`` for a batch of ``task.completed`` events in one transaction: one
    SELECT for the completed tasks, one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` for the next
    occurrences (the (series, occurrence) key keeps each exactly once, whatever was delivered before
    or concurrently), one for their tags, one for their reminders, one for their events. Per event:
    the occurrence it created, or None."""
    now = clock()
    results: list[model.Task | None] = [None] * len(batch)
    recurring = [
        (i, r)
        for i, r in enumerate(batch)
        if r.data.task.recurrence is not None and r.data.task.due_at is not None and r.data.task.completed_at
    ]
    if not recurring:
        return results
    with uow:
        current = uow.tasks.get_many({r.data.task.id for _, r in recurring})
        planned: list[tuple[int, model.Task]] = []
        for i, received in recurring:
            snapshot = received.data.task
            completed = current.pop(snapshot.id, None)  # a second completion in the batch creates nothing
            if completed is None:
                continue  # deleted (deleting an occurrence ends the series), or delivered again
            nxt = _as_completed(completed, snapshot).next_occurrence(received.data.actor, now)
            if nxt is not None:
                planned.append((i, nxt))
        added = uow.tasks.add_occurrences([t for _, t in planned])
        schedules = []
        for i, nxt in planned:
            if nxt.id in added:
                results[i] = nxt
                schedules.append((nxt, nxt.reminder_schedule(now, set)))
        uow.reminders.add_pending([(t, s) for t, s in schedules if s], now)
        uow.commit(now)
    return results
