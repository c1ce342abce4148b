"""event-fanout: cron-triggered relay of pending outbox rows (the at-least-once safety net)."""

import functions_framework
from flask import Request, Response

from taskflow import runtime
from taskflow.api.consumers import cron
from taskflow.domain.model import utcnow
from taskflow.observability import configure_logging
from taskflow.service_layer import handlers

configure_logging()


def _tick() -> dict[str, int]:
    result = handlers.relay_outbox(runtime.engine(), runtime.publisher(), utcnow())
    return {"sent": result.sent, "failed": result.failed}


@functions_framework.http
def event_fanout(request: Request) -> Response:
    return cron(request, _tick)
