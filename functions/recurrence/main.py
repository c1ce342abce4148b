"""recurrence: on task.completed of a recurring task, create the next occurrence exactly once."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events, telemetry
from taskflow.api.consumers import consume
from taskflow.observability import configure_logging, served
from taskflow.service_layer import outbox, tasks

configure_logging()


@functions_framework.http
@served("recurrence")
def recurrence(request: Request) -> Response:
    root = bootstrap.root()

    def create_next(received: events.Received) -> str:
        uow = root.uow("/taskflow/recurrence")
        task = tasks.create_next_occurrence(uow, root.clock, received)
        if task is None:
            return "nothing to create"
        telemetry.instruments().occurrences_created.add(1)
        outbox.publish_committed(uow, root.publisher, root.clock)
        return f"created occurrence {task.occurrence} ({task.id})"

    def create_next_batch(batch: list[events.Received]) -> list[str]:
        uow = root.uow("/taskflow/recurrence")
        created = tasks.create_next_occurrences(uow, root.clock, batch)
        made = [t for t in created if t is not None]
        if made:
            telemetry.instruments().occurrences_created.add(len(made))
            outbox.publish_committed(uow, root.publisher, root.clock)
        return [f"created occurrence {t.occurrence} ({t.id})" if t else "nothing to create" for t in created]

    return consume(
        request, root.settings, (events.TASK_COMPLETED,), create_next, create_next_batch, warm=root.check_database
    )
