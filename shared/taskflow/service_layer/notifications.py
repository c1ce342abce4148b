"""Notifications: the user's inbox (idempotent per event) and the signed webhook, if configured."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from taskflow import events, telemetry
from taskflow.domain import model
from taskflow.service_layer.errors import RetryableError
from taskflow.service_layer.ports import Clock, WebhookSender
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger("taskflow.notifications")


class Notification(BaseModel):
    """One inbox entry, as ``GET /v1/notifications`` lists it and the webhook receives it."""

    id: str
    task_id: str
    title: str
    fire_at: str
    created_at: str
    late: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Notification:
        return cls.model_validate(
            {k: model.format_time(v) if isinstance(v, datetime) else v for k, v in row.items() if k in cls.model_fields}
        )


def _inbox_row(received: events.Received, now: datetime) -> dict[str, Any]:
    """The inbox entry a ``reminder.due`` event makes (webhook not tried yet)."""
    data = received.data
    assert isinstance(data, events.ReminderDueData)
    return {
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


def notify(uow: AbstractUnitOfWork, clock: Clock, received: events.Received, webhooks: WebhookSender) -> Notification:
    """Write the inbox entry once per event id, then deliver the signed webhook if configured.

    A webhook failure raises RetryableError: the redelivery finds the inbox row already there
    and only retries the webhook, so the inbox is never duplicated.
    """
    data = received.data
    assert isinstance(data, events.ReminderDueData)
    now = clock()
    with uow:
        uow.notifications.add(_inbox_row(received, now))
        row = uow.notifications.get_by_event(received.id)
        webhook_url = uow.settings.get(data.owner_id)
        uow.commit(now)
    assert row is not None
    notification = Notification.from_row(row)
    if not webhook_url or row["webhook_status"] == "delivered":
        return notification
    status, error = _deliver(webhooks, webhook_url, notification, received.id)
    _mark_webhook(uow, clock, row["id"], status)
    if error is not None:
        raise error
    return notification


def notify_batch(
    uow: AbstractUnitOfWork, clock: Clock, batch: list[events.Received], webhooks: WebhookSender
) -> list[Notification | RetryableError]:
    """``notify`` for a batch of ``reminder.due`` events: the inbox entries in one transaction (one
    multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, one SELECT for the webhook URLs of
    their users, and one for the entries of events delivered before, only when there are some);
    then each webhook, and their outcomes in one more transaction. Per event: its notification, or
    the RetryableError of a failed webhook (only that event is redelivered)."""
    now = clock()
    rows: dict[str, dict[str, Any]] = {}
    for received in batch:
        rows.setdefault(received.id, _inbox_row(received, now))
    with uow:
        stored = uow.notifications.add_many(list(rows.values()))
        seen_before = [event_id for event_id in rows if event_id not in stored]
        stored |= uow.notifications.get_by_events(seen_before)
        urls = uow.settings.get_many({r["owner_id"] for r in rows.values()})
        uow.commit(now)
    outcomes: dict[str, Notification | RetryableError] = {}
    marks: dict[str, list[str]] = {}
    for event_id in rows:  # in delivery order
        row = stored[event_id]
        notification = outcomes[event_id] = Notification.from_row(row)
        url = urls.get(row["owner_id"])
        if not url or row["webhook_status"] == "delivered":
            continue
        status, error = _deliver(webhooks, url, notification, event_id)
        marks.setdefault(status, []).append(row["id"])
        if error is not None:
            outcomes[event_id] = error
    if marks:
        now = clock()
        with uow:
            for status, ids in marks.items():
                telemetry.instruments().webhook_deliveries.add(len(ids), {"outcome": status})
                uow.notifications.mark_webhooks(ids, status, now)
            uow.commit(now)
    return [outcomes[r.id] for r in batch]


def _deliver(
    webhooks: WebhookSender, url: str, notification: Notification, event_id: str
) -> tuple[str, RetryableError | None]:
    """Send one webhook: (the status to record, the error that asks for a redelivery)."""
    try:
        webhooks.check(url)
    except ValueError as exc:
        log.warning("webhook for notification %s not sent: %s", notification.id, exc)
        return "refused", None
    try:
        status = webhooks.send(url, notification.model_dump(), event_id)
    except Exception as exc:  # network errors of either adapter
        return "failed", RetryableError(f"webhook delivery failed: {exc}")
    if 300 <= status < 400:
        log.warning("webhook for notification %s not sent: the receiver redirected (%d)", notification.id, status)
        return "refused", None
    if status >= 300:
        return "failed", RetryableError(f"webhook answered {status}")
    return "delivered", None


def _mark_webhook(uow: AbstractUnitOfWork, clock: Clock, notification_id: str, status: str) -> None:
    telemetry.instruments().webhook_deliveries.add(1, {"outcome": status})
    now = clock()
    with uow:
        uow.notifications.mark_webhook(notification_id, status, now)
        uow.commit(now)


def list_notifications(uow: AbstractUnitOfWork, owner_id: str, limit: int) -> list[Notification]:
    with uow:
        rows = uow.notifications.list(owner_id, limit)
    return [Notification.from_row(r) for r in rows]


def get_settings(uow: AbstractUnitOfWork, owner_id: str) -> str | None:
    with uow:
        return uow.settings.get(owner_id)


def put_settings(
    uow: AbstractUnitOfWork, clock: Clock, webhooks: WebhookSender, owner_id: str, webhook_url: str | None
) -> str | None:
    """Store the user's webhook URL; ValueError when the URL policy refuses it (nothing written)."""
    if webhook_url is not None:
        webhooks.check(webhook_url)
    now = clock()
    with uow:
        uow.settings.put(owner_id, webhook_url, now)
        uow.commit(now)
    return webhook_url
