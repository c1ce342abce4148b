"""event-fanout: cron-triggered relay of pending outbox rows (the at-least-once safety net)."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap
from taskflow.api.consumers import cron
from taskflow.observability import configure_logging
from taskflow.service_layer import outbox

configure_logging()


@functions_framework.http
def event_fanout(request: Request) -> Response:
    root = bootstrap.root()

    def tick() -> dict[str, int]:
        publisher = root.publisher
        if publisher is None:
            raise RuntimeError("no publisher in this process")
        result = outbox.relay_outbox(root.uow(), publisher, root.clock)
        return {"sent": result.sent, "failed": result.failed}

    return cron(request, root.settings, tick)
