"""reminder-dispatch: cron-triggered; claims due reminders and publishes reminder.due."""

from datetime import timedelta

import functions_framework
from flask import Request, Response

from taskflow import bootstrap
from taskflow.api.consumers import cron
from taskflow.observability import configure_logging, served
from taskflow.service_layer import outbox, reminders

configure_logging()

GRACE_KEY = "reminder_grace_seconds"


@functions_framework.http
@served("reminder-dispatch")
def reminder_dispatch(request: Request) -> Response:
    root = bootstrap.root()

    def tick() -> dict[str, int]:
        live = root.live_config({GRACE_KEY: str(root.settings.reminder_grace_seconds)})
        live.refresh()
        late_after = timedelta(seconds=max(60.0, 3 * root.settings.reminder_interval))
        grace = timedelta(seconds=live.get_int(GRACE_KEY))
        uow = root.uow("/taskflow/reminder-dispatch")
        result = reminders.dispatch_reminders(uow, root.clock, grace, late_after)
        outbox.publish_committed(uow, root.publisher, root.clock)
        return {"fired": result.fired, "late": result.late, "missed": result.missed}

    return cron(request, root.settings, tick)
