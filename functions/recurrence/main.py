"""recurrence: on task.completed of a recurring task, create the next occurrence exactly once."""

import functions_framework
from flask import Request, Response

from taskflow import events, runtime
from taskflow.api.consumers import consume
from taskflow.domain.model import utcnow
from taskflow.observability import configure_logging
from taskflow.service_layer import handlers

configure_logging()


def _next(received: events.Received) -> str:
    now = utcnow()
    engine = runtime.engine()
    task, envelopes = handlers.create_next_occurrence(engine, received, now)
    if task is None:
        return "nothing to create"
    runtime.publish_after_commit(envelopes, now)
    return f"created occurrence {task.occurrence} ({task.id})"


@functions_framework.http
def recurrence(request: Request) -> Response:
    return consume(request, (events.TASK_COMPLETED,), _next)
