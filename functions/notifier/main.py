"""notifier: reminder.due -> one inbox entry (idempotent) and one signed webhook, if configured."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events
from taskflow.api.consumers import consume
from taskflow.observability import configure_logging, served
from taskflow.service_layer import notifications

configure_logging()


@functions_framework.http
@served("notifier")
def notifier(request: Request) -> Response:
    root = bootstrap.root()

    def notify(received: events.Received) -> str:
        notifications.notify(root.uow("/taskflow/notifier"), root.clock, received, root.webhooks)
        return "notified"

    return consume(request, root.settings, (events.REMINDER_DUE,), notify)
