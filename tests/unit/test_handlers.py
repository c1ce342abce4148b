"""The use cases on a fake unit of work and a fixed clock: no database, no threads, no sleeping.

The fakes stand in for the ports (repositories, publisher, webhook sender); the handlers under
test are the real ones."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskflow import events
from taskflow.domain import model
from taskflow.domain.query import TaskQuery
from taskflow.service_layer import audit, notifications, outbox, reminders, tasks
from taskflow.service_layer.errors import RetryableError
from taskflow.service_layer.ports import PublishError
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork, PendingEvent

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeTasks:
    def __init__(self) -> None:
        self.rows: dict[str, model.Task] = {}
        self.deleted: set[str] = set()
        self.seen: list[model.Task] = []

    def _load(self, task: model.Task) -> model.Task:
        copy = task.snapshot()
        self.seen.append(copy)
        return copy

    def add(self, task: model.Task) -> bool:
        if task.series_id and self.series_has(task.series_id, task.occurrence):
            return False
        self.rows[task.id] = task.snapshot()
        self.seen.append(task)
        return True

    def add_new(self, new_tasks: Sequence[model.Task]) -> None:
        if any(t.id in self.rows for t in new_tasks):
            raise RuntimeError("a task with this id exists")  # the database's primary key
        for task in new_tasks:
            self.add(task)

    def get(self, owner_id: str, task_id: str, *, for_update: bool = False) -> model.Task:
        task = self.rows.get(task_id)
        if task is None or task.owner_id != owner_id or task_id in self.deleted:
            raise model.NotFound(task_id)
        return self._load(task)

    def get_any(self, task_id: str, *, include_deleted: bool = True) -> model.Task | None:
        task = self.rows.get(task_id)
        if task is None or (task_id in self.deleted and not include_deleted):
            return None
        return self._load(task)

    def owners(self, task_ids: Iterable[str]) -> dict[str, str]:
        return {i: self.rows[i].owner_id for i in task_ids if i in self.rows}

    def series_has(self, series_id: str, occurrence: int) -> bool:
        return any(t.series_id == series_id and t.occurrence == occurrence for t in self.rows.values())

    def save(self, task: model.Task) -> None:
        self.rows[task.id] = task.snapshot()

    def mark_deleted(self, task: model.Task, now: datetime) -> None:
        self.deleted.add(task.id)

    def tag_counts(self, owner_id: str) -> list[tuple[str, int]]:
        return []

    def list(self, owner_id: str, query: TaskQuery, now: datetime) -> tuple[list[model.Task], str | None]:
        return [t for t in self.rows.values() if t.owner_id == owner_id], None


class FakeOutbox:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add_many(self, envelopes: Sequence[events.Envelope], now: datetime) -> None:
        self.rows += [{"envelope": e, "sent_at": None, "error": None} for e in envelopes]

    def claim_pending(self, limit: int) -> list[PendingEvent]:
        pending = [r["envelope"] for r in self.rows if r["sent_at"] is None][:limit]
        return [PendingEvent(i, e.id, e.topic, e.partition_key, e.to_json()) for i, e in enumerate(pending)]

    def mark_sent(self, event_ids: Iterable[str], now: datetime) -> None:
        ids = set(event_ids)
        for r in self.rows:
            if r["envelope"].id in ids and r["sent_at"] is None:
                r["sent_at"] = now

    def mark_failed(self, event_id: str, error: str) -> None:
        for r in self.rows:
            if r["envelope"].id == event_id:
                r["error"] = error

    def pending(self) -> list[events.Envelope]:
        return [r["envelope"] for r in self.rows if r["sent_at"] is None]


class FakeReminders:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def armed(self, task_id: str) -> set[tuple[int, datetime]]:
        return {(r["slot"], r["fire_at"]) for r in self.rows if r["task_id"] == task_id and r["status"] != "pending"}

    def replace_pending(
        self, task: model.Task, schedule: list[tuple[int, datetime]], now: datetime, *, new: bool = False
    ) -> None:
        self.rows = [r for r in self.rows if not (r["task_id"] == task.id and r["status"] == "pending")]
        for slot, fire_at in schedule:
            row = {"id": f"{task.id}/{slot}", "task_id": task.id, "owner_id": task.owner_id, "title": task.title}
            self.rows.append(row | {"slot": slot, "fire_at": fire_at, "status": "pending", "late": False})

    def add_pending(self, schedules: Sequence[tuple[model.Task, list[tuple[int, datetime]]]], now: datetime) -> None:
        for task, schedule in schedules:
            self.replace_pending(task, schedule, now, new=True)

    def claim_due(self, now: datetime, limit: int) -> list[model.DueReminder]:
        due = [r for r in self.rows if r["status"] == "pending" and r["fire_at"] <= now][:limit]
        return [model.DueReminder(r["id"], r["task_id"], r["owner_id"], r["fire_at"], r["title"]) for r in due]

    def mark(self, ids: Sequence[str], status: str, now: datetime, late: bool = False) -> None:
        for r in self.rows:
            if r["id"] in ids and r["status"] == "pending":
                r.update(status=status, late=late)


class FakeAudit:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def append(self, row: dict[str, Any]) -> bool:
        if row["event_id"] in self.rows:
            return False
        self.rows[row["event_id"]] = row
        return True

    def append_many(self, rows: list[dict[str, Any]]) -> set[str]:
        return {r["event_id"] for r in rows if self.append(r)}

    def history(self, task_id: str, owner_id: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r["task_id"] == task_id and r["owner_id"] == owner_id]


class FakeNotifications:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, row: dict[str, Any]) -> bool:
        if row["event_id"] in self.rows:
            return False
        self.rows[row["event_id"]] = dict(row)
        return True

    def get_by_event(self, event_id: str) -> dict[str, Any] | None:
        return self.rows.get(event_id)

    def mark_webhook(self, notification_id: str, status: str, now: datetime) -> None:
        for r in self.rows.values():
            if r["id"] == notification_id:
                r["webhook_status"] = status
                r["webhook_attempts"] += 1

    def list(self, owner_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r["owner_id"] == owner_id][:limit]


class FakeSettings:
    def __init__(self) -> None:
        self.urls: dict[str, str | None] = {}

    def get(self, owner_id: str) -> str | None:
        return self.urls.get(owner_id)

    def put(self, owner_id: str, webhook_url: str | None, now: datetime) -> None:
        self.urls[owner_id] = webhook_url


class FakeUnitOfWork(AbstractUnitOfWork):
    """In-memory repositories; a transaction that is not committed leaves no events in the outbox."""

    tasks: FakeTasks
    outbox: FakeOutbox
    reminders: FakeReminders
    audit: FakeAudit
    notifications: FakeNotifications
    settings: FakeSettings

    def __init__(self, source: str = "/taskflow/tasks-api") -> None:
        super().__init__(source)
        self.tasks = FakeTasks()
        self.outbox = FakeOutbox()
        self.reminders = FakeReminders()
        self.audit = FakeAudit()
        self.notifications = FakeNotifications()
        self.settings = FakeSettings()
        self.commits = 0

    def _begin(self) -> None:
        self.tasks.seen = []

    def _commit(self) -> None:
        self.commits += 1

    def _end(self) -> None:
        pass


class FakePublisher:
    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.fail_for = fail_for or set()
        self.sent: list[dict[str, Any]] = []

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        event = json.loads(event_json)
        if event["type"] in self.fail_for:
            raise PublishError("broker down")
        self.sent.append(event)


class FakeWebhooks:
    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = answers or []
        self.sent: list[tuple[str, dict[str, Any], str]] = []

    def check(self, url: str) -> None:
        if not url.startswith("https://"):
            raise ValueError("webhook_url must use https")

    def send(self, url: str, payload: dict[str, Any], event_id: str) -> int:
        self.sent.append((url, payload, event_id))
        return self.answers.pop(0) if self.answers else 204


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def types(envelopes: Iterable[events.Envelope]) -> list[str]:
    return [e.type for e in envelopes]


# --- tasks -----------------------------------------------------------------------------------


def test_each_change_commits_once_and_its_event_reaches_the_outbox(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    task = tasks.create_task(uow, clock, "alice", {"title": "Write"})
    tasks.update_task(uow, clock, "alice", task.id, {"title": "Write it"}, None)
    tasks.update_task(uow, clock, "alice", task.id, {"title": "Write it"}, None)  # no change: no event
    tasks.complete_task(uow, clock, "alice", task.id, None)
    tasks.complete_task(uow, clock, "alice", task.id, None)  # already completed: no second event
    tasks.delete_task(uow, clock, "alice", task.id, None)
    assert types(uow.outbox.pending()) == [
        events.TASK_CREATED,
        events.TASK_UPDATED,
        events.TASK_COMPLETED,
        events.TASK_DELETED,
    ]
    assert uow.commits == 4
    assert uow.outbox.pending()[0].time == model.format_time(NOW)


def test_a_stale_if_match_changes_nothing(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    task = tasks.create_task(uow, clock, "alice", {"title": "Write"})
    with pytest.raises(model.PreconditionFailed):
        tasks.update_task(uow, clock, "alice", task.id, {"title": "x"}, '"stale"')
    assert types(uow.outbox.pending()) == [events.TASK_CREATED]
    assert tasks.get_task(uow, "alice", task.id).title == "Write"


def test_reminders_are_armed_by_the_clock_and_disarmed_by_completion(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    due = NOW + timedelta(hours=2)
    fields = {"title": "Call", "due_at": due, "reminders": [model.Reminder(offset="-PT1H"), model.Reminder(at=NOW)]}
    task = tasks.create_task(uow, clock, "alice", fields)
    # the absolute reminder is not in the future: only the relative one is armed
    assert [(r["slot"], r["fire_at"]) for r in uow.reminders.rows] == [(0, due - timedelta(hours=1))]
    tasks.complete_task(uow, clock, "alice", task.id, None)
    assert uow.reminders.rows == []


def test_dispatch_sends_a_due_reminder_once(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    fields = {
        "title": "Call",
        "due_at": NOW + timedelta(days=2),
        "reminders": [model.Reminder(at=NOW + timedelta(minutes=1))],
    }
    task = tasks.create_task(uow, clock, "alice", fields)
    assert reminders.dispatch_reminders(uow, clock, timedelta(hours=1), timedelta(minutes=1)).fired == 0
    clock.now = NOW + timedelta(minutes=1, seconds=30)
    result = reminders.dispatch_reminders(uow, clock, grace=timedelta(hours=1), late_after=timedelta(minutes=1))
    assert (result.fired, result.late, result.missed) == (1, 0, 0)
    due = [e for e in uow.outbox.pending() if e.type == events.REMINDER_DUE]
    assert [e.subject for e in due] == [task.id]
    assert due[0].data["late"] is False and due[0].source == "/taskflow/reminder-dispatch"
    assert reminders.dispatch_reminders(uow, clock, timedelta(hours=1), timedelta(minutes=1)).fired == 0


def test_dispatch_after_downtime(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    for minutes in (1, 2):
        at = NOW + timedelta(minutes=minutes)
        fields = {"title": f"t{minutes}", "due_at": NOW + timedelta(days=1), "reminders": [model.Reminder(at=at)]}
        tasks.create_task(uow, clock, "alice", fields)
    clock.now = NOW + timedelta(hours=1, minutes=1, seconds=30)  # down for an hour
    result = reminders.dispatch_reminders(uow, clock, grace=timedelta(hours=1), late_after=timedelta(minutes=1))
    assert (result.fired, result.late, result.missed) == (1, 1, 1)


# --- outbox ----------------------------------------------------------------------------------


def test_publish_after_commit_marks_sent_and_leaves_the_rest_in_order(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    task = tasks.create_task(uow, clock, "alice", {"title": "a"})
    assert outbox.publish_committed(uow, FakePublisher(), clock) == 1
    assert uow.outbox.pending() == []
    down = FakePublisher(fail_for={events.TASK_UPDATED})
    tasks.update_task(uow, clock, "alice", task.id, {"title": "b"}, None)
    assert outbox.publish_committed(uow, down, clock) == 0
    assert types(uow.outbox.pending()) == [events.TASK_UPDATED]
    assert outbox.publish_committed(uow, None, clock) == 0  # nothing left to publish from this commit


def test_the_relay_blocks_a_task_whose_event_failed_so_order_holds(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    a = tasks.create_task(uow, clock, "alice", {"title": "a"})
    tasks.update_task(uow, clock, "alice", a.id, {"title": "a2"}, None)
    tasks.create_task(uow, clock, "alice", {"title": "b"})
    broker = FakePublisher(fail_for={events.TASK_UPDATED})
    result = outbox.relay_outbox(uow, broker, clock)
    assert (result.sent, result.failed) == (2, 1)
    assert types(uow.outbox.pending()) == [events.TASK_UPDATED]
    healed = FakePublisher()
    assert outbox.relay_outbox(uow, healed, clock).sent == 1
    assert healed.sent[0]["id"] == uow.outbox.rows[1]["envelope"].id  # the fixed id, re-published


# --- consumers -------------------------------------------------------------------------------


def _received(envelope: events.Envelope) -> events.Received:
    return events.parse({"content-type": "application/cloudevents+json"}, envelope.to_json().encode())


def test_audit_records_each_event_once(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    task = tasks.create_task(uow, clock, "alice", {"title": "a"})
    received = _received(uow.outbox.pending()[0])
    assert audit.record_audit(uow, clock, received) is True
    assert audit.record_audit(uow, clock, received) is False
    assert [h["type"] for h in audit.history(uow, "alice", task.id)] == [events.TASK_CREATED]


def test_the_next_occurrence_is_created_once_with_its_event() -> None:
    uow = FakeUnitOfWork("/taskflow/recurrence")
    clock = FixedClock()
    fields = {"title": "Daily", "due_at": NOW, "recurrence": model.Recurrence("FREQ=DAILY")}
    task = tasks.create_task(uow, clock, "alice", fields)
    tasks.complete_task(uow, clock, "alice", task.id, None)
    completed = _received(uow.outbox.pending()[-1])
    nxt = tasks.create_next_occurrence(uow, clock, completed)
    assert nxt is not None and nxt.occurrence == 2 and nxt.due_at == NOW + timedelta(days=1)
    assert tasks.create_next_occurrence(uow, clock, completed) is None  # a redelivery
    created = [e for e in uow.outbox.pending() if e.subject == nxt.id]
    assert types(created) == [events.TASK_CREATED] and created[0].source == "/taskflow/recurrence"


def _reminder_due(uow: FakeUnitOfWork, clock: FixedClock, url: str | None) -> events.Received:
    uow.settings.put("alice", url, NOW)
    task = tasks.create_task(uow, clock, "alice", {"title": "Ping"})
    due = model.DueReminder("r1", task.id, "alice", NOW, "Ping")
    return _received(events.reminder_due(due, False, NOW))


def test_a_failed_webhook_is_retryable_and_the_inbox_is_written_once(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    received = _reminder_due(uow, clock, "https://hooks.example/x")
    hooks = FakeWebhooks(answers=[503])
    with pytest.raises(RetryableError):
        notifications.notify(uow, clock, received, hooks)
    sent = notifications.notify(uow, clock, received, hooks)
    assert len(uow.notifications.rows) == 1 and len(hooks.sent) == 2
    assert hooks.sent[-1] == ("https://hooks.example/x", sent.model_dump(), received.id)
    notifications.notify(uow, clock, received, hooks)  # delivered already: not sent again
    assert len(hooks.sent) == 2
    assert [n.title for n in notifications.list_notifications(uow, "alice", 10)] == ["Ping"]


def test_a_webhook_url_the_policy_refuses_is_not_called(uow: FakeUnitOfWork) -> None:
    clock = FixedClock()
    received = _reminder_due(uow, clock, "http://10.0.0.1/hook")
    hooks = FakeWebhooks()
    notifications.notify(uow, clock, received, hooks)
    assert hooks.sent == [] and next(iter(uow.notifications.rows.values()))["webhook_status"] == "refused"
    with pytest.raises(ValueError):
        notifications.put_settings(uow, clock, hooks, "alice", "http://10.0.0.1/hook")
