"""notifier: reminder.due -> one inbox entry (idempotent) and one signed webhook, if configured."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events
from taskflow.api.consumers import consume
from taskflow.observability import configure_logging, served
from taskflow.service_layer import notifications
from taskflow.service_layer.errors import RetryableError

configure_logging()


@functions_framework.http
@served("notifier")
def notifier(request: Request) -> Response:
    root = bootstrap.root()

    def notify(received: events.Received) -> str:
        notifications.notify(root.uow("/taskflow/notifier"), root.clock, received, root.webhooks)
        return "notified"

    def notify_batch(batch: list[events.Received]) -> list[str | RetryableError]:
        outcomes = notifications.notify_batch(root.uow("/taskflow/notifier"), root.clock, batch, root.webhooks)
        return [o if isinstance(o, RetryableError) else "notified" for o in outcomes]

    return consume(request, root.settings, (events.REMINDER_DUE,), notify, notify_batch, warm=root.check_database)
