"""Reminder dispatch: claim due reminders, turn each into one ``reminder.due`` event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from taskflow import events, telemetry
from taskflow.service_layer.ports import Clock
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork


@dataclass(frozen=True)
class DispatchResult:
    fired: int
    late: int
    missed: int


def dispatch_reminders(
    uow: AbstractUnitOfWork, clock: Clock, grace: timedelta, late_after: timedelta, batch: int = 1000
) -> DispatchResult:
    """Claim due reminders, record one ``reminder.due`` each (outbox), mark them fired.

    Reminders missed by more than ``grace`` are marked missed and not sent; those later than
    ``late_after`` are sent with ``late: true``.
    """
    now = clock()
    with uow:
        fired: list[str] = []
        lateness: list[float] = []
        late_ids: list[str] = []
        missed: list[str] = []
        for reminder in uow.reminders.claim_due(now, batch):
            lag = now - reminder.fire_at
            if lag > grace:
                missed.append(reminder.id)
                continue
            late = lag > late_after
            lateness.append(max(lag.total_seconds(), 0.0))
            (late_ids if late else fired).append(reminder.id)
            uow.emit(events.reminder_due(reminder, late, now))
        uow.reminders.mark(fired, "fired", now)
        uow.reminders.mark(late_ids, "fired", now, late=True)
        uow.reminders.mark(missed, "missed", now)
        uow.commit(now)
    ins = telemetry.instruments()
    for seconds in lateness:
        ins.reminder_lateness.record(seconds)
    if fired:
        ins.reminders_dispatched.add(len(fired), {"late": "false"})
    if late_ids:
        ins.reminders_dispatched.add(len(late_ids), {"late": "true"})
    if missed:
        ins.reminders_missed.add(len(missed))
    return DispatchResult(len(fired) + len(late_ids), len(late_ids), len(missed))
