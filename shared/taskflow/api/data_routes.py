"""Data in and out on tasks-api (DESIGN §11): iCalendar import, asynchronous exports, downloads.

``POST /v1/imports`` takes a ``text/calendar`` body (at most 5 MiB) and answers per item;
``POST /v1/exports`` records an export that the ``exports`` function writes; ``GET /v1/exports/{id}``
shows it with an expiring download URL; ``GET /v1/downloads/...`` serves embedded mode's signed URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from flask import Request, Response
from pydantic import BaseModel, ConfigDict
from werkzeug.routing import Rule

from taskflow.api import http
from taskflow.api.http import HttpError, json_response, read_model
from taskflow.domain import ical, limits
from taskflow.service_layer import exports, imports

log = logging.getLogger("taskflow.api.data")

MAX_CALENDAR = limits.CALENDAR.max

RULES = [
    Rule("/v1/imports", endpoint="import_calendar", methods=["POST"]),
    Rule("/v1/exports", endpoint="export_create", methods=["POST"]),
    Rule("/v1/exports/<export_id>", endpoint="export_get", methods=["GET"]),
    Rule("/v1/downloads/<path:key>", endpoint="download", methods=["GET"]),
]
PUBLIC = {"download"}  # the signature in the URL is the credential, as with a presigned S3 URL


# --- the schemas (also in the OpenAPI document) --------------------------------------------


class SkippedItem(BaseModel):
    uid: str | None
    reason: str


class ImportReport(BaseModel):
    """What an import did: created and updated tasks, unchanged ones, and the items it skipped."""

    created: int
    updated: int
    unchanged: int
    skipped: list[SkippedItem]


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["ics", "json"]


class ExportStatus(BaseModel):
    id: str
    format: Literal["ics", "json"]
    status: Literal["pending", "ready", "failed"]
    created_at: str
    expires_at: str
    download_url: str | None = None
    download_expires_at: str | None = None
    reason: str | None = None


# --- views (``call`` is api.app's Call: the request, the root, the user) ---------------------


def _read_calendar(request: Request) -> bytes:
    ctype = (request.mimetype or "").lower()
    if ctype != "text/calendar":
        raise HttpError(
            415,
            "Unsupported media type",
            "send the calendar as Content-Type: text/calendar",
            slug="media-type",
            headers={"Accept-Post": "text/calendar"},
        )
    length = request.content_length
    too_large = http.too_large(limits.CALENDAR)
    if length is not None and length > MAX_CALENDAR:
        raise too_large
    data = request.stream.read(MAX_CALENDAR + 1)
    if len(data) > MAX_CALENDAR:
        raise too_large
    if not data.strip():
        raise HttpError(400, "Empty calendar", "the body is empty; send a VCALENDAR", slug="malformed-calendar")
    return data


def import_calendar(call: Any) -> Response:
    data = _read_calendar(call.request)
    try:
        items = ical.parse_calendar(data)
    except ical.CalendarError as exc:
        raise HttpError(400, "Malformed calendar", str(exc), slug="malformed-calendar") from exc
    result = imports.ImportResult()
    quotas = call.root.settings.quotas
    for batch in imports.batches(items):
        call.write(lambda uow, b=batch: imports.import_batch(uow, call.root.clock, call.user, b, result, quotas))
    return json_response(result.to_api())


def export_create(call: Any) -> Response:
    req, _ = read_model(call.request, ExportRequest)
    row = call.write(lambda uow: exports.request_export(uow, call.root.clock, call.user, req.format))
    body = exports.export_status(call.uow, call.root.clock, None, call.user, row["id"])
    return json_response(body, 202, {"Location": f"/v1/exports/{row['id']}", "Retry-After": "1"})


def export_get(call: Any, export_id: str) -> Response:
    store = call.root.object_store
    body = exports.export_status(call.uow, call.root.clock, store, call.user, export_id)
    url = body.get("download_url")
    if url and url.startswith("/"):
        body["download_url"] = call.request.host_url.rstrip("/") + url
    headers = {"Retry-After": "1"} if body["status"] == "pending" else {}
    return json_response(body, 200, headers)


def download(call: Any, key: str) -> Response:
    """Embedded mode's signed download URLs (the stack and the cloud presign with the S3 binding)."""
    store = call.root.object_store
    verify = getattr(store, "verify", None)
    args = call.request.args
    filename = args.get("filename", "")
    if verify is None or not verify(key, filename, args.get("expires", ""), args.get("signature", "")):
        raise HttpError(403, "Forbidden", "the download link is invalid or has expired", slug="download")
    try:
        data = store.get(key)
    except (KeyError, ValueError) as exc:
        raise HttpError(404, "Not found", "the export no longer exists", slug="not-found") from exc
    content_type = "text/calendar; charset=utf-8" if filename.endswith(".ics") else "application/json"
    resp = Response(data, status=200, content_type=content_type)
    safe = "".join(c for c in filename if c.isalnum() or c in "-._") or "export"
    resp.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


VIEWS: dict[str, Callable[..., Response]] = {
    "import_calendar": import_calendar,
    "export_create": export_create,
    "export_get": export_get,
    "download": download,
}
