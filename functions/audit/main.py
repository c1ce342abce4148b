"""audit: one append-only row per task event; answers task history over service invocation."""

import re

import functions_framework
from flask import Request, Response

from taskflow import events, runtime
from taskflow.api.consumers import consume, guarded
from taskflow.api.http import HttpError, json_response
from taskflow.domain.model import utcnow
from taskflow.observability import configure_logging
from taskflow.service_layer import handlers

configure_logging()

_HISTORY = re.compile(r"^/history/([0-9a-fA-F-]{36})/?$")


def _record(received: events.Received) -> str:
    return "recorded" if handlers.record_audit(runtime.engine(), received, utcnow()) else "duplicate"


def _history(request: Request, task_id: str) -> Response:
    owner = request.args.get("owner")
    if not owner:
        raise HttpError(422, "Missing owner", "history needs ?owner=<user id>")
    return json_response({"items": handlers.history(runtime.engine(), owner, task_id)})


@functions_framework.http
def audit(request: Request) -> Response:
    match = _HISTORY.match(request.path)
    if match and request.method == "GET":
        task_id = match.group(1)
        return guarded(request, lambda: _history(request, task_id))
    return consume(request, events.TASK_TYPES, _record)
