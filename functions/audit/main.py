"""audit: one append-only row per task event; answers task history over service invocation."""

import re

import functions_framework
from flask import Request, Response

from taskflow import bootstrap, events, telemetry
from taskflow.api.consumers import consume, guarded
from taskflow.api.http import HttpError, json_response
from taskflow.observability import configure_logging, served
from taskflow.service_layer import archive
from taskflow.service_layer import audit as audit_trail

configure_logging()

_HISTORY = re.compile(r"^/history/([0-9a-fA-F-]{36})/?$")


def _history(root: bootstrap.Root, request: Request, task_id: str) -> Response:
    owner = request.args.get("owner")
    if not owner:
        raise HttpError(422, "Missing owner", "history needs ?owner=<user id>")
    items = audit_trail.history(root.uow(), owner, task_id)
    body: dict[str, object] = {"items": items}
    before = archive.archived_before(root.uow(), owner, task_id)
    if before is not None:
        body["archived_before"] = before  # older entries live in the audit archive (object storage)
    return json_response(body)


@functions_framework.http
@served("audit")
def audit(request: Request) -> Response:
    root = bootstrap.root()
    match = _HISTORY.match(request.path)
    if match and request.method == "GET":
        task_id = match.group(1)
        telemetry.set_route("/history/{task_id}")
        return guarded(request, root.settings, lambda: _history(root, request, task_id))

    def record(received: events.Received) -> str:
        return "recorded" if audit_trail.record_audit(root.uow(), root.clock, received) else "duplicate"

    def record_batch(batch: list[events.Received]) -> list[str]:
        added = audit_trail.record_audit_batch(root.uow(), root.clock, batch)
        return ["recorded" if a else "duplicate" for a in added]

    def warm() -> None:  # on the local stack's readiness probe
        from taskflow.api import warmup

        warmup.once(root, "audit", warmup.audit_trail)

    return consume(request, root.settings, events.TASK_TYPES, record, record_batch, warm=warm)
