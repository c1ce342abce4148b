"""notifier: reminder.due -> one inbox entry (idempotent) and one signed webhook, if configured."""

import functions_framework
from flask import Request, Response

from taskflow import config, events, runtime
from taskflow.api.app import check_webhook_url
from taskflow.api.consumers import consume
from taskflow.domain.model import utcnow
from taskflow.observability import configure_logging
from taskflow.service_layer import handlers

configure_logging()


def _notify(received: events.Received) -> str:
    handlers.notify(
        runtime.engine(),
        received,
        utcnow(),
        runtime.binding(),
        config.webhook_signing_key(),
        check_webhook_url,
    )
    return "notified"


@functions_framework.http
def notifier(request: Request) -> Response:
    return consume(request, (events.REMINDER_DUE,), _notify)
