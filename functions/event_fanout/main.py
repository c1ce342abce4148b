"""event-fanout: cron-triggered relay of pending outbox rows (the at-least-once safety net)."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, telemetry
from taskflow.api.consumers import cron
from taskflow.observability import configure_logging, served
from taskflow.service_layer import outbox

configure_logging()


@functions_framework.http
@served("event-fanout")
def event_fanout(request: Request) -> Response:
    root = bootstrap.root()

    def tick() -> dict[str, int]:
        publisher = root.publisher
        if publisher is None:
            raise RuntimeError("no publisher in this process")
        from taskflow.adapters.backlog import outbox_backlog  # the tables module: not at import (cold start)

        result = outbox.relay_outbox(root.uow(), publisher, root.clock)
        pending, oldest_age = outbox_backlog(root.engine, root.clock())
        ins = telemetry.instruments()
        ins.outbox_pending.set(pending)
        ins.outbox_oldest_age.set(oldest_age)
        return {"sent": result.sent, "failed": result.failed}

    return cron(request, root.settings, tick)
