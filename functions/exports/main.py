"""exports: writes requested user exports (iCalendar, JSON) through the object store binding.

Two cron triggers: ``/cron`` (every few minutes) is the exports' housekeeping: exports pending too
long become failed, exports older than seven days are deleted, objects no ready export points to are
swept. ``/cron/archive`` (daily, a cron binding of its own) moves audit rows older than the retention
period (configuration key ``audit_retention_days``, default 90) to the audit archive."""

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events
from taskflow.api.consumers import consume, cron
from taskflow.observability import configure_logging, served
from taskflow.service_layer import archive
from taskflow.service_layer import exports as user_exports

configure_logging()


@functions_framework.http
@served("exports")
def exports(request: Request) -> Response:
    root = bootstrap.root()
    path = request.path.rstrip("/")
    if path == "/cron":

        def housekeeping() -> dict[str, int]:
            uow = root.uow("/taskflow/exports")
            failed = user_exports.fail_stale(uow, root.clock)
            purged = user_exports.purge_expired(uow, root.clock, root.object_store)
            swept = user_exports.sweep_orphans(uow, root.clock, root.object_store)
            return {"failed": failed, "purged": purged, "orphans_deleted": swept}

        return cron(request, root.settings, housekeeping)
    if path == archive.CRON_ROUTE:

        def archive_tick() -> dict[str, int]:
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
            return result.to_api()

        return cron(request, root.settings, archive_tick)

    def write(received: events.Received) -> str:
        return user_exports.run_export(root.uow("/taskflow/exports"), root.clock, root.object_store, received)

    return consume(request, root.settings, (events.EXPORT_REQUESTED,), write)
