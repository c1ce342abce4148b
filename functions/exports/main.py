"""exports: writes requested user exports (iCalendar, JSON) through the object store binding and,
on its cron, deletes exports older than seven days."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events
from taskflow.api.consumers import consume, cron
from taskflow.observability import configure_logging
from taskflow.service_layer import exports as user_exports

configure_logging()


@functions_framework.http
def exports(request: Request) -> Response:
    root = bootstrap.root()
    if request.path.rstrip("/") == "/cron":

        def tick() -> dict[str, int]:
            purged = user_exports.purge_expired(root.uow("/taskflow/exports"), root.clock, root.object_store)
            return {"purged": purged}

        return cron(request, root.settings, tick)

    def write(received: events.Received) -> str:
        return user_exports.run_export(root.uow("/taskflow/exports"), root.clock, root.object_store, received)

    return consume(request, root.settings, (events.EXPORT_REQUESTED,), write)
