"""Use cases. Each takes plain values and a unit of work (or an engine), commits once, and returns
the envelopes to publish after commit. No HTTP, no Dapr: ports are passed in."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from taskflow import events
from taskflow.adapters.ports import OutputBinding, Publisher, PublishError
from taskflow.adapters.repository import PendingEvent
from taskflow.domain import model
from taskflow.service_layer.unit_of_work import UnitOfWork

log = logging.getLogger("taskflow.handlers")


class RetryableError(RuntimeError):
    """A transient failure: the caller should answer so that Dapr redelivers."""


# --- tasks ---------------------------------------------------------------------------------


def _record(uow: UnitOfWork, task: model.Task, now: datetime, source: str = "/taskflow/tasks-api") -> None:
    for event in task.events:
        envelope = events.task_event(event, source)
        uow.outbox.add(envelope, now)
        uow.pending_events.append(envelope)
    task.events.clear()


def create_task(uow: UnitOfWork, owner_id: str, fields: dict[str, Any], now: datetime) -> model.Task:
    task = model.Task.create(owner_id, owner_id, now=now, **fields)
    uow.tasks.add(task)
    uow.reminders.sync(task, now)
    _record(uow, task, now)
    return task


def _check_etag(task: model.Task, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return
    weakless = {t[2:] if t.startswith("W/") else t for t in tags}
    if task.etag not in weakless:
        raise model.PreconditionFailed(task.etag)


def update_task(
    uow: UnitOfWork, owner_id: str, task_id: str, changes: dict[str, Any], if_match: str | None, now: datetime
) -> model.Task:
    task = uow.tasks.get(owner_id, task_id, for_update=True)
    _check_etag(task, if_match)
    diff = task.update(owner_id, changes, now)
    if diff:
        uow.tasks.save(task)
        uow.reminders.sync(task, now)
        _record(uow, task, now)
    return task


def _transition(
    uow: UnitOfWork, owner_id: str, task_id: str, if_match: str | None, now: datetime, to: model.Status
) -> model.Task:
    """Complete or reopen; a task already in that state is answered as is, with no event."""
    task = uow.tasks.get(owner_id, task_id, for_update=True)
    _check_etag(task, if_match)
    changed = task.complete(owner_id, now) if to is model.Status.COMPLETED else task.reopen(owner_id, now)
    if changed:
        uow.tasks.save(task)
        uow.reminders.sync(task, now)
        _record(uow, task, now)
    return task


def complete_task(uow: UnitOfWork, owner_id: str, task_id: str, if_match: str | None, now: datetime) -> model.Task:
    return _transition(uow, owner_id, task_id, if_match, now, model.Status.COMPLETED)


def reopen_task(uow: UnitOfWork, owner_id: str, task_id: str, if_match: str | None, now: datetime) -> model.Task:
    return _transition(uow, owner_id, task_id, if_match, now, model.Status.OPEN)


def delete_task(uow: UnitOfWork, owner_id: str, task_id: str, if_match: str | None, now: datetime) -> None:
    task = uow.tasks.get(owner_id, task_id, for_update=True)
    _check_etag(task, if_match)
    task.delete(owner_id, now)
    uow.tasks.mark_deleted(task, now)
    uow.reminders.sync(task, now, deleted=True)
    _record(uow, task, now)


# --- publishing ----------------------------------------------------------------------------


def _acknowledges(publisher: Publisher) -> bool:
    """True for a publisher that marks rows sent itself once delivered (the in-process bus)."""
    return bool(getattr(publisher, "acknowledges_delivery", False))


def publish_now(engine: Engine, publisher: Publisher, envelopes: list[events.Envelope], now: datetime) -> int:
    """Publish right after commit so delivery never waits for a relay tick; failures stay pending."""
    sent: list[str] = []
    for envelope in envelopes:
        try:
            publisher.publish(envelope.topic, envelope.to_json(), envelope.partition_key)
        except PublishError as exc:
            log.warning("publish of %s deferred to the outbox relay: %s", envelope.id, exc)
            break  # keep one task's events in order: the relay sends the rest
        sent.append(envelope.id)
    if sent and not _acknowledges(publisher):
        with UnitOfWork(engine) as uow:
            uow.outbox.mark_sent(sent, now)
            uow.commit()
    return len(sent)


def _publish_wave(publisher: Publisher, rows: list[PendingEvent]) -> list[tuple[PendingEvent, str | None]]:
    """Publish rows (one per task); a publisher with ``publish_batch`` gets one call per topic."""
    outcome: list[tuple[PendingEvent, str | None]] = []
    batch = getattr(publisher, "publish_batch", None)
    topics: dict[str, list[PendingEvent]] = {}
    for row in rows:
        topics.setdefault(row.topic, []).append(row)
    for topic, group in topics.items():
        if batch is not None and len(group) > 1:
            errors = batch(topic, [(r.event_id, r.event, r.partition_key) for r in group])
            outcome += [(r, errors.get(r.event_id)) for r in group]
            continue
        for row in group:
            try:
                publisher.publish(topic, row.event, row.partition_key)
            except PublishError as exc:
                outcome.append((row, str(exc)))
            else:
                outcome.append((row, None))
    return outcome


@dataclass(frozen=True)
class RelayResult:
    sent: int
    failed: int


def relay_outbox(engine: Engine, publisher: Publisher, now: datetime, batch: int = 500) -> RelayResult:
    """Relay pending outbox rows oldest first with their fixed ids; rows stay locked while in flight."""
    with UnitOfWork(engine) as uow:
        remaining = uow.outbox.claim_pending(batch)
        sent: list[str] = []
        failed = 0
        blocked: set[str] = set()
        while remaining:
            # A wave holds at most one event per task, so a failure can never let a task's later
            # event overtake an earlier one; a task whose event failed waits for the next relay.
            wave: list[PendingEvent] = []
            later: list[PendingEvent] = []
            keys: set[str] = set()
            for row in remaining:
                if row.partition_key in blocked:
                    continue
                (later if row.partition_key in keys else wave).append(row)
                keys.add(row.partition_key)
            for row, error in _publish_wave(publisher, wave):
                if error is None:
                    sent.append(row.event_id)
                else:
                    failed += 1
                    blocked.add(row.partition_key)
                    uow.outbox.mark_failed(row.event_id, error)
            remaining = later
        if not _acknowledges(publisher):
            uow.outbox.mark_sent(sent, now)
        uow.commit()
    return RelayResult(len(sent), failed)


# --- reminders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchResult:
    fired: int
    late: int
    missed: int
    envelopes: list[events.Envelope]


def dispatch_reminders(
    engine: Engine, now: datetime, grace: timedelta, late_after: timedelta, batch: int = 1000
) -> DispatchResult:
    """Claim due reminders, turn each into one ``reminder.due`` event (outbox), mark them fired.

    Reminders missed by more than ``grace`` are marked missed and not sent.
    """
    with UnitOfWork(engine) as uow:
        due = uow.reminders.claim_due(now, batch)
        fired: list[str] = []
        late_ids: list[str] = []
        missed: list[str] = []
        for reminder in due:
            lag = now - reminder.fire_at
            if lag > grace:
                missed.append(reminder.id)
                continue
            late = lag > late_after
            (late_ids if late else fired).append(reminder.id)
            data = events.ReminderDueData(
                reminder_id=reminder.id,
                task_id=reminder.task_id,
                owner_id=reminder.owner_id,
                title=reminder.title,
                fire_at=reminder.fire_at,
                late=late,
            )
            uow.pending_events.append(events.reminder_due(data, now))
        uow.outbox.add_many(uow.pending_events, now)
        uow.reminders.mark(fired, "fired", now)
        uow.reminders.mark(late_ids, "fired", now, late=True)
        uow.reminders.mark(missed, "missed", now)
        uow.commit()
        return DispatchResult(len(fired) + len(late_ids), len(late_ids), len(missed), uow.pending_events)


# --- consumers -----------------------------------------------------------------------------


def record_audit(engine: Engine, received: events.Received, now: datetime) -> bool:
    """Append one audit row per event id; False when it was already recorded."""
    data = received.data
    assert isinstance(data, events.TaskEventData)
    with UnitOfWork(engine) as uow:
        added = uow.audit.append(
            {
                "event_id": received.id,
                "task_id": data.task.id,
                "owner_id": _owner_of(uow, data),
                "type": received.type,
                "time": datetime.fromisoformat(data.task.updated_at.replace("Z", "+00:00")),
                "actor": data.actor,
                "changes": data.changes,
                "recorded_at": now,
            }
        )
        uow.commit()
    return added


def _owner_of(uow: UnitOfWork, data: events.TaskEventData) -> str:
    task = uow.tasks.get_any(data.task.id)
    return task.owner_id if task is not None else data.actor


def history(engine: Engine, owner_id: str, task_id: str) -> list[dict[str, Any]]:
    with UnitOfWork(engine) as uow:
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


def create_next_occurrence(
    engine: Engine, received: events.Received, now: datetime
) -> tuple[model.Task | None, list[events.Envelope]]:
    """On ``task.completed`` of a recurring task create occurrence N+1, exactly once.

    Returns the new task (None when there is none to create) and the envelopes to publish."""
    data = received.data
    assert isinstance(data, events.TaskEventData)
    snapshot = data.task
    if snapshot.recurrence is None or snapshot.due_at is None or snapshot.completed_at is None:
        return None, []
    with UnitOfWork(engine) as uow:
        current = uow.tasks.get_any(snapshot.id, include_deleted=False)
        if current is None:
            return None, []  # deleting an occurrence ends the series
        series_id = current.series_id or current.id
        if uow.tasks.series_has(series_id, snapshot.occurrence + 1):
            return None, []  # duplicate delivery, or completed again after a reopen
        completed = current
        completed.series_id = series_id
        completed.due_at = _parse_time(snapshot.due_at)
        completed.completed_at = _parse_time(snapshot.completed_at)
        completed.occurrence = snapshot.occurrence
        completed.recurrence = model.Recurrence(snapshot.recurrence.rule, model.Anchor(snapshot.recurrence.anchor))
        nxt = completed.next_occurrence(now)
        if nxt is None or not uow.tasks.add(nxt):
            return None, []  # the series has ended, or a concurrent delivery created it
        nxt.events.append(model.TaskEvent("created", nxt.snapshot(), data.actor))
        uow.reminders.sync(nxt, now)
        _record(uow, nxt, now, source="/taskflow/recurrence")
        uow.commit()
    return nxt, uow.pending_events


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def canonical_json(value: Any) -> bytes:
    """JSON exactly as Go's encoding/json writes it: sorted keys, compact, HTML-safe escapes.

    Dapr's HTTP output binding decodes the payload and re-encodes it that way, so the signature
    must cover these bytes, the ones the receiver gets.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def sign(body: bytes, key: str) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def notify(
    engine: Engine,
    received: events.Received,
    now: datetime,
    binding: OutputBinding,
    signing_key: str,
    validate_url: Any,
) -> dict[str, Any]:
    """Write the inbox entry once per event id, then deliver the signed webhook if configured.

    A webhook failure raises RetryableError: the redelivery finds the inbox row already there
    and only retries the webhook, so the inbox is never duplicated.
    """
    data = received.data
    assert isinstance(data, events.ReminderDueData)
    with UnitOfWork(engine) as uow:
        uow.notifications.add(
            {
                "id": str(uuid.uuid4()),
                "event_id": received.id,
                "owner_id": data.owner_id,
                "task_id": data.task_id,
                "reminder_id": data.reminder_id,
                "title": data.title,
                "fire_at": data.fire_at,
                "late": data.late,
                "created_at": now,
                "webhook_status": "none",
                "webhook_attempts": 0,
            }
        )
        row = uow.notifications.get_by_event(received.id)
        webhook_url = uow.settings.get(data.owner_id)
        uow.commit()
    assert row is not None
    notification = notification_json(row)
    if not webhook_url or row["webhook_status"] == "delivered":
        return notification
    try:
        validate_url(webhook_url)
    except ValueError as exc:
        log.warning("webhook for notification %s not sent: %s", row["id"], exc)
        _mark_webhook(engine, row["id"], "refused", now)
        return notification
    body = canonical_json(notification)
    headers = {
        "Content-Type": "application/json",
        "X-TaskFlow-Event-Id": received.id,
        "X-TaskFlow-Signature": sign(body, signing_key),
    }
    try:
        status = binding.post(webhook_url, body, headers)
    except Exception as exc:  # network errors of either adapter
        _mark_webhook(engine, row["id"], "failed", now)
        raise RetryableError(f"webhook delivery failed: {exc}") from exc
    if status >= 300:
        _mark_webhook(engine, row["id"], "failed", now)
        raise RetryableError(f"webhook answered {status}")
    _mark_webhook(engine, row["id"], "delivered", now)
    return notification


def _mark_webhook(engine: Engine, notification_id: str, status: str, now: datetime) -> None:
    with UnitOfWork(engine) as uow:
        uow.notifications.mark_webhook(notification_id, status, now)
        uow.commit()


def notification_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "title": row["title"],
        "fire_at": model.format_time(row["fire_at"]),
        "created_at": model.format_time(row["created_at"]),
        "late": bool(row["late"]),
    }
