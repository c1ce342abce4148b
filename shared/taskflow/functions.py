"""The catalogue of TaskFlow's functions: the one list the embedded runner, the local stack, the
chart checks and the tests read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    folder: str  # functions/<folder>/main.py; also the functions-framework target
    app_id: str  # the Dapr app-id, the Knative Service and the chart's key


FUNCTIONS: tuple[Function, ...] = (
    Function("tasks_api", "tasks-api"),
    Function("event_fanout", "event-fanout"),
    Function("reminder_dispatch", "reminder-dispatch"),
    Function("notifier", "notifier"),
    Function("recurrence", "recurrence"),
    Function("audit", "audit"),
    Function("exports", "exports"),
)
