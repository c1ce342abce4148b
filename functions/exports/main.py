"""exports: writes requested user exports (iCalendar, JSON) through the object store binding; on its
cron, deletes exports older than seven days and moves audit rows older than the retention period
(configuration key ``audit_retention_days``, default 90) to the audit archive."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events
from taskflow.api.consumers import consume, cron
from taskflow.observability import configure_logging
from taskflow.service_layer import archive
from taskflow.service_layer import exports as user_exports

configure_logging()


@functions_framework.http
def exports(request: Request) -> Response:
    root = bootstrap.root()
    if request.path.rstrip("/") == "/cron":

        def tick() -> dict[str, int]:
            purged = user_exports.purge_expired(root.uow("/taskflow/exports"), root.clock, root.object_store)
            live = root.live_config(archive.DEFAULTS)
            live.refresh()
            result = archive.archive_audit(
                root.uow("/taskflow/exports"),
                root.clock,
                root.object_store,
                live.get_int(archive.RETENTION_KEY),
                batch=live.get_int(archive.BATCH_KEY),
                max_objects=live.get_int(archive.MAX_OBJECTS_KEY),
            )
            return {"purged": purged, **result.to_api()}

        return cron(request, root.settings, tick)

    def write(received: events.Received) -> str:
        return user_exports.run_export(root.uow("/taskflow/exports"), root.clock, root.object_store, received)

    return consume(request, root.settings, (events.EXPORT_REQUESTED,), write)
