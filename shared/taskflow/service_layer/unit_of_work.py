"""The unit of work the handlers see: repositories on one transaction; commit once, roll back on
any error. It collects the events the aggregates recorded: on commit they go to the outbox in the
same transaction, and ``committed_events`` holds them for publishing right after.

The SQL implementation is ``adapters.sql_unit_of_work``; tests use a fake with the same shape.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from taskflow import events
from taskflow.domain import model
from taskflow.domain.limits import Usage
from taskflow.domain.query import TaskQuery


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row waiting to be published."""

    seq: int
    event_id: str
    topic: str
    partition_key: str
    event: str


class TaskRepository(Protocol):
    seen: list[model.Task]
    """Every task this repository added or loaded in the current transaction (their events are collected)."""

    def add(self, task: model.Task) -> bool:
        """Insert; False when the series already has this occurrence (exactly-once key)."""

    def get(self, owner_id: str, task_id: str, *, for_update: bool = False) -> model.Task: ...

    def get_any(self, task_id: str, *, include_deleted: bool = True) -> model.Task | None: ...

    def get_many(self, task_ids: Iterable[str]) -> dict[str, model.Task]:
        """The live tasks among these ids, by id (consumers: any owner)."""

    def add_new(self, new_tasks: Sequence[model.Task]) -> None:
        """Insert brand-new tasks (fresh ids, no series) all at once."""

    def add_occurrences(self, occurrences: Sequence[model.Task]) -> set[str]:
        """Insert occurrences of series, each unless its series already has it; the ids inserted."""

    def series_has(self, series_id: str, occurrence: int) -> bool: ...

    def owners(self, task_ids: Iterable[str]) -> dict[str, str]:
        """The owner of each of these tasks that exists (deleted ones too)."""

    def save(self, task: model.Task) -> None: ...

    def mark_deleted(self, task: model.Task, now: datetime) -> None: ...

    def tag_counts(self, owner_id: str) -> list[tuple[str, int]]: ...

    def usage(self, owner_id: str, *, with_tags: bool) -> Usage:
        """Open tasks and (``with_tags``) distinct tags of the user, for the per-user quotas."""

    def list(self, owner_id: str, query: TaskQuery, now: datetime) -> tuple[list[model.Task], str | None]: ...


class OutboxRepository(Protocol):
    def add_many(self, envelopes: Sequence[events.Envelope], now: datetime) -> None: ...

    def claim_pending(self, limit: int) -> list[PendingEvent]: ...

    def mark_sent(self, event_ids: Iterable[str], now: datetime) -> None: ...

    def mark_failed(self, event_id: str, error: str) -> None: ...


class ReminderRepository(Protocol):
    def armed(self, task_id: str) -> set[tuple[int, datetime]]:
        """(slot, fire_at) of the task's reminders that already fired or were missed."""

    def replace_pending(
        self, task: model.Task, schedule: list[tuple[int, datetime]], now: datetime, *, new: bool = False
    ) -> None:
        """Pending rows become ``schedule``; ``new``: the task has no reminder rows yet."""

    def add_pending(self, schedules: Sequence[tuple[model.Task, list[tuple[int, datetime]]]], now: datetime) -> None:
        """The reminders of new tasks (which have no reminder rows yet), all at once."""

    def claim_due(self, now: datetime, limit: int) -> list[model.DueReminder]: ...

    def mark(self, ids: Sequence[str], status: str, now: datetime, late: bool = False) -> None: ...


class AuditRepository(Protocol):
    def append(self, row: dict[str, Any]) -> bool: ...

    def append_many(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the rows whose event id is new; the event ids inserted."""

    def history(self, task_id: str, owner_id: str) -> list[dict[str, Any]]: ...


class NotificationRepository(Protocol):
    def add(self, row: dict[str, Any]) -> bool: ...

    def add_many(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Insert the rows whose event id is new; the rows inserted, by event id."""

    def get_by_event(self, event_id: str) -> dict[str, Any] | None: ...

    def get_by_events(self, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def mark_webhooks(self, notification_ids: Sequence[str], status: str, now: datetime) -> None: ...

    def mark_webhook(self, notification_id: str, status: str, now: datetime) -> None: ...

    def list(self, owner_id: str, limit: int = 100) -> list[dict[str, Any]]: ...


class SettingsRepository(Protocol):
    def get(self, owner_id: str) -> str | None: ...

    def get_many(self, owner_ids: Iterable[str]) -> dict[str, str]:
        """The webhook URL of each of these users that has one."""

    def put(self, owner_id: str, webhook_url: str | None, now: datetime) -> None: ...


class DataRepository(Protocol):
    """Data in and out: imported UIDs, export records, the audit archive (``adapters.data_repository``)."""

    def imported_task(self, owner_id: str, uid: str) -> str | None: ...

    def remember_import(self, owner_id: str, uid: str, task_id: str, now: datetime) -> None: ...

    def add_export(self, row: dict[str, Any]) -> None: ...

    def get_export(self, export_id: str, owner_id: str | None = None) -> dict[str, Any] | None: ...

    def finish_export(
        self, export_id: str, status: str, now: datetime, object_key: str | None = None, reason: str | None = None
    ) -> bool: ...

    def expired_exports(self, now: datetime, limit: int) -> list[dict[str, Any]]: ...

    def stale_exports(self, created_before: datetime, limit: int) -> list[dict[str, Any]]:
        """Exports still pending that were requested before ``created_before``."""

    def exports_by_id(self, export_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def delete_export(self, export_id: str) -> None: ...

    def audit_of_owner(self, owner_id: str) -> list[dict[str, Any]]: ...

    def archivable_audit(self, before: datetime, limit: int) -> list[dict[str, Any]]: ...

    def archive_recorded(self, object_key: str) -> dict[str, Any] | None: ...

    def record_archive(self, manifest: dict[str, Any], tasks: Sequence[dict[str, Any]]) -> bool: ...

    def delete_audit(self, event_ids: Sequence[str]) -> int: ...

    def archived_before(self, task_id: str, owner_id: str) -> datetime | None: ...

    def archive_keys_of_owner(self, owner_id: str) -> list[str]: ...


class AbstractUnitOfWork(abc.ABC):
    """``with uow:`` opens a transaction (a unit of work may be entered again for the next one)."""

    tasks: TaskRepository
    outbox: OutboxRepository
    reminders: ReminderRepository
    audit: AuditRepository
    notifications: NotificationRepository
    settings: SettingsRepository
    data: DataRepository

    def __init__(self, source: str = "/taskflow/tasks-api") -> None:
        self.source = source  # the CloudEvent source of the events this unit of work records
        self.committed_events: list[events.Envelope] = []
        self._emitted: list[events.Envelope] = []

    def __enter__(self) -> AbstractUnitOfWork:
        self._emitted = []
        self._begin()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end()

    def emit(self, envelope: events.Envelope) -> None:
        """An event that no task aggregate records (``reminder.due``)."""
        self._emitted.append(envelope)

    def commit(self, now: datetime) -> None:
        """Write the collected events to the outbox, then commit."""
        envelopes = list(self._emitted)
        for task in self.tasks.seen:
            envelopes += [events.task_event(e, self.source) for e in task.events]
            task.events.clear()
        self.outbox.add_many(envelopes, now)
        self._commit()
        self.committed_events = envelopes
        self._emitted = []

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _end(self) -> None:
        """Roll back unless committed; release the connection."""
