"""HTTP plumbing shared by every function: problem+json, JSON bodies, the app API token check."""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from flask import Request, Response
from pydantic import BaseModel, ValidationError

from taskflow import telemetry
from taskflow.domain import limits
from taskflow.domain.limits import Limit

MAX_BODY = limits.BODY.max
#: Task fields a client may read but not write, and what to do instead.
READ_ONLY = {
    "status": "read-only field; use POST /v1/tasks/{id}/complete or /reopen",
    "completed_at": "read-only field; set by POST /v1/tasks/{id}/complete",
    **{name: "read-only field" for name in ("id", "series_id", "occurrence", "created_at", "updated_at", "version")},
}
M = TypeVar("M", bound=BaseModel)
PROBLEM_TYPE = "https://taskflow.dev/problems/"


class HttpError(Exception):
    """An error that maps to one problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        limit: tuple[Limit, int] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.headers = headers or {}
        self.limit = limit


def invalid(field: str, message: str, title: str = "Validation failed", kind: str = "value_error") -> HttpError:
    """A 422 naming one offending field (body field or query parameter)."""
    return HttpError(
        422, title, message, slug="validation", errors=[{"field": field, "message": message, "type": kind}]
    )


def problem(err: HttpError, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + err.slug if err.slug else "about:blank",
        "title": err.title,
        "status": err.status,
    }
    if err.detail:
        body["detail"] = err.detail
    if instance:
        body["instance"] = instance
    if err.errors is not None:
        body["errors"] = err.errors
    if err.limit is not None:
        limit, maximum = err.limit
        body["limit"] = {"name": limit.name, "max": maximum, "unit": limit.unit}
    trace_id = telemetry.trace_id()
    if trace_id:
        body["trace_id"] = trace_id  # a bug report quoting it leads to the logs and the trace
    resp = Response(json.dumps(body), status=err.status, mimetype="application/problem+json")
    for name, value in err.headers.items():
        resp.headers[name] = value
    return resp


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def too_large(limit: Limit) -> HttpError:
    return HttpError(
        413,
        "Payload too large",
        f"{limit.what.split(' (')[0]} must be at most {limit.max} {limit.unit}",
        slug="too-large",
        limit=(limit, limit.max),
    )


def over_limit(limit: Limit, maximum: int, message: str, status: int = 422, field: str | None = None) -> HttpError:
    """The problem for a request that hits one of the service's limits; ``limit`` names it."""
    errors = [{"field": field, "message": message, "type": "limit"}] if field else None
    return HttpError(status, "Limit exceeded", message, slug="limit", errors=errors, limit=(limit, maximum))


def read_body(request: Request) -> bytes:
    """The raw body, refusing more than 1 MiB whether or not Content-Length is announced."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise too_large(limits.BODY)
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise too_large(limits.BODY)
    return data


def read_json_object(request: Request) -> tuple[dict[str, Any], bytes]:
    raw = read_body(request)
    if not raw.strip():
        raise HttpError(400, "Malformed JSON", "the request body is empty; send a JSON object", slug="malformed-json")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, "Malformed JSON", f"the body is not valid JSON: {exc}", slug="malformed-json") from exc
    if not isinstance(value, dict):
        raise HttpError(
            422,
            "Validation failed",
            "the body must be a JSON object",
            slug="validation",
            errors=[{"field": "", "message": "expected a JSON object", "type": "object_type"}],
        )
    return value, raw


def read_model(request: Request, model: type[M]) -> tuple[M, bytes]:
    """The body parsed as JSON and validated by ``model`` (400/413/422 problems otherwise), and its raw bytes."""
    body, raw = read_json_object(request)
    try:
        return model.model_validate(body), raw
    except ValidationError as exc:
        raise unprocessable(exc) from exc


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = ".".join(loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = READ_ONLY.get(field, "unknown field")
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append({"field": prefix + field, "message": message, "type": err["type"]})
    return out


def unprocessable(exc: ValidationError, detail: str = "the request has invalid fields", prefix: str = "") -> HttpError:
    return HttpError(422, "Validation failed", detail, slug="validation", errors=validation_errors(exc, prefix))


def require_app_token(request: Request, expected: str | None) -> None:
    """Event and cron routes answer only the sidecar, which sends APP_API_TOKEN as dapr-api-token."""
    if not expected:
        return
    given = request.headers.get("dapr-api-token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HttpError(401, "Unauthorized", "this route only answers the Dapr sidecar", slug="app-token")
