"""OpenAPI 3.1 of the REST API, generated from the pydantic models that validate requests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from taskflow.api import data_routes, preview, schemas, signin
from taskflow.domain import limits

_MODELS: list[type[BaseModel]] = [
    schemas.TaskCreate,
    schemas.TaskPatch,
    schemas.TaskOut,
    schemas.TaskList,
    schemas.TagList,
    schemas.History,
    schemas.NotificationList,
    schemas.UserSettings,
    schemas.Problem,
    preview.RecurrencePreviewRequest,
    preview.RecurrencePreview,
    signin.SignInOptions,
    signin.DevTokenRequest,
    signin.DevToken,
    data_routes.ImportReport,
    data_routes.ExportRequest,
    data_routes.ExportStatus,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref(schemas.Problem)}}}


_ERRORS = {
    "400": _problem("Malformed JSON"),
    "401": _problem("Missing or invalid bearer token"),
    "404": _problem("No such task for this user"),
    "413": _problem("Body over 1 MiB (limit body_bytes)"),
    "422": _problem(
        "Invalid field, unknown field or bad query parameter, or a limit of the service reached "
        "(search length, page size, per-user open tasks or tags: the problem's limit member names it)"
    ),
    "503": {
        **_problem("Database or Dapr sidecar unreachable for a moment; retry (a create with its Idempotency-Key)"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying"}},
    },
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "Version of the task, for If-Match"}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: type[BaseModel] | None = None,
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **({} if public else _ERRORS)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _list_params() -> list[dict[str, Any]]:
    props = schemas.ListQuery.model_json_schema()["properties"]
    descriptions = {
        "q": "Full-text search over title and description; every word must match, prefixes match",
        "priority": "Comma list of priorities",
        "tags": "Comma list of tags",
        "sort": "Comma list of due_at, priority, created_at, updated_at, title, relevance; '-' = descending",
    }
    out = []
    for name, schema in props.items():
        if name in ("priority", "tags", "sort"):
            schema = {"type": "string"}
        out.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": descriptions.get(name, ""),
            }
        )
    return out


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
    task_ok = {"200": {"description": "The task", "headers": _ETAG, "content": _json(schemas.TaskOut)}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "TaskFlow API",
            "version": "1.0.0",
            "description": "Tasks with due dates, reminders, recurrence, tags, search, filter and sort.\n\n"
            + _limits_text(),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "paths": {
            "/healthz": {"get": _op("Liveness", {"200": {"description": "Alive"}}, public=True)},
            "/readyz": {
                "get": _op(
                    "Readiness (checks the database)",
                    {"200": {"description": "Ready"}, "503": _problem("Not ready")},
                    public=True,
                )
            },
            "/v1/openapi.json": {"get": _op("This document", {"200": {"description": "OpenAPI 3.1"}}, public=True)},
            "/v1/tasks": {
                "post": _op(
                    "Create a task",
                    {
                        "201": {
                            "description": "Created",
                            "content": _json(schemas.TaskOut),
                            "headers": {**_ETAG, "Location": {"schema": {"type": "string"}}},
                        },
                        "409": _problem("A request with this Idempotency-Key is in progress"),
                    },
                    body=schemas.TaskCreate,
                    params=[
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                        }
                    ],
                ),
                "get": _op(
                    "List, filter, search and sort tasks",
                    {"200": {"description": "A page", "content": _json(schemas.TaskList)}},
                    params=_list_params(),
                ),
            },
            "/v1/tasks/{id}": {
                "get": _op(
                    "Get a task",
                    {**task_ok, "304": {"description": "Not modified (If-None-Match matched the ETag)"}},
                    params=[
                        _ID,
                        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                ),
                "patch": _op(
                    "Update some fields (null clears)",
                    {**task_ok, "412": _problem("If-Match mismatch")},
                    body=schemas.TaskPatch,
                    params=[_ID, _IF_MATCH],
                ),
                "delete": _op(
                    "Delete a task",
                    {"204": {"description": "Deleted"}, "412": _problem("If-Match mismatch")},
                    params=[_ID, _IF_MATCH],
                ),
            },
            "/v1/tasks/{id}/complete": {
                "post": _op(
                    "Complete (idempotent)", {**task_ok, "412": _problem("If-Match mismatch")}, params=[_ID, _IF_MATCH]
                )
            },
            "/v1/tasks/{id}/reopen": {
                "post": _op("Reopen", {**task_ok, "412": _problem("If-Match mismatch")}, params=[_ID, _IF_MATCH])
            },
            "/v1/tasks/{id}/history": {
                "get": _op(
                    "Event history, oldest first",
                    {
                        "200": {"description": "History", "content": _json(schemas.History)},
                        "502": _problem("The audit service did not answer"),
                    },
                    params=[_ID],
                )
            },
            "/v1/tags": {
                "get": _op("Tags with task counts", {"200": {"description": "Tags", "content": _json(schemas.TagList)}})
            },
            "/v1/notifications": {
                "get": _op(
                    "Reminder inbox, newest first",
                    {
                        "200": {
                            "description": "Notifications",
                            "headers": {"ETag": {"schema": {"type": "string"}}},
                            "content": _json(schemas.NotificationList),
                        },
                        "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                    },
                    params=[
                        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                        },
                    ],
                )
            },
            "/v1/settings": {
                "get": _op(
                    "User settings", {"200": {"description": "Settings", "content": _json(schemas.UserSettings)}}
                ),
                "put": _op(
                    "Replace user settings",
                    {"200": {"description": "Settings", "content": _json(schemas.UserSettings)}},
                    body=schemas.UserSettings,
                ),
            },
            "/v1/recurrence/preview": {
                "post": _op(
                    "Preview a recurrence rule: the next due times (each occurrence completed on time); writes nothing",
                    {"200": {"description": "Next due times", "content": _json(preview.RecurrencePreview)}},
                    body=preview.RecurrencePreviewRequest,
                )
            },
            "/v1/imports": {
                "post": {
                    **_op(
                        "Import iCalendar VTODOs (RFC 5545): one task per UID and user; a UID imported before "
                        "updates its task; items that cannot be imported are listed with a reason",
                        {
                            "200": {"description": "What the import did", "content": _json(data_routes.ImportReport)},
                            "400": _problem("Not an iCalendar object"),
                            "413": _problem("Calendar over 5 MiB"),
                            "415": _problem("Content-Type is not text/calendar"),
                        },
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/calendar": {"schema": {"type": "string", "maxLength": data_routes.MAX_CALENDAR}}
                        },
                    },
                }
            },
            "/v1/exports": {
                "post": _op(
                    "Request an export of all your data (ics: tasks as iCalendar VTODOs; json: tasks, notifications, "
                    "settings and full history); it is written asynchronously",
                    {
                        "202": {
                            "description": "Accepted: poll the Location",
                            "content": _json(data_routes.ExportStatus),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        }
                    },
                    body=data_routes.ExportRequest,
                )
            },
            "/v1/exports/{export_id}": {
                "get": _op(
                    "An export: pending, ready with a download URL valid for 15 minutes, or failed with a reason; "
                    "exports are deleted after 7 days",
                    {"200": {"description": "The export", "content": _json(data_routes.ExportStatus)}},
                    params=[{"name": "export_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                )
            },
            "/v1/downloads/{key}": {
                "get": _op(
                    "Download an export through its signed, expiring URL (embedded mode; the stack and the cloud "
                    "hand out presigned object-storage URLs instead)",
                    {
                        "200": {"description": "The export file"},
                        "403": _problem("The link is invalid or has expired"),
                        "404": _problem("The export no longer exists"),
                    },
                    params=[
                        {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "filename", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "expires", "in": "query", "required": True, "schema": {"type": "integer"}},
                        {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
                    ],
                    public=True,
                )
            },
            "/v1/auth/options": {
                "get": _op(
                    "Sign-in methods this server offers (for the web app)",
                    {"200": {"description": "Options", "content": _json(signin.SignInOptions)}},
                    public=True,
                )
            },
            "/v1/auth/dev-token": {
                "post": {
                    **_op(
                        "A development token for a user name; only while the generated development secret is in use",
                        {
                            "200": {"description": "Token", "content": _json(signin.DevToken)},
                            "400": _problem("Malformed JSON"),
                            "403": _problem("Development sign-in is off (a real secret or JWKS is configured)"),
                            "422": _problem("Invalid user name"),
                        },
                        body=signin.DevTokenRequest,
                        public=True,
                    )
                }
            },
        },
    }
    return _linked(doc)


def _limits_text() -> str:
    """The limits of the service (domain/limits.py), as the document's description lists them."""
    lines = [
        "Limits. A request that hits one gets a problem that names it: a field's limit in `errors`,",
        "every other limit in the problem's `limit` member (`name`, `max`, `unit`).",
        "",
    ]
    lines += [f"- `{x.name}`: {x.max} {x.unit}: {x.what}" for x in limits.ALL]
    return "\n".join(lines)


#: Any request can meet it: the app answers problem+json past 2 KiB of query string, the HTTP
#: server (gunicorn) answers its own HTML page for a request line past 4094 bytes.
_URI_TOO_LONG = {
    "description": "Query string over 2 KiB (limit query_string_bytes), or a request line the HTTP server refuses",
    "content": {
        "application/problem+json": {"schema": _ref(schemas.Problem)},
        "text/html": {"schema": {"type": "string"}},
    },
}


def _operation_id(method: str, path: str) -> str:
    """``get /v1/tasks/{id}/history`` -> ``get_tasks_id_history``: stable, derived, never forgotten."""
    words = [w.strip("{}") for w in path.split("/") if w and w != "v1"]
    return "_".join([method, *words]).replace("-", "_").replace(".", "_")


def _linked(doc: dict[str, Any]) -> dict[str, Any]:
    """Name every operation, and link a created task's id to every operation on ``/v1/tasks/{id}...``
    (OpenAPI links: clients and stateful testers follow them from POST /v1/tasks)."""
    links: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            op["operationId"] = _operation_id(method, path)
            op["responses"].setdefault("414", _URI_TOO_LONG)
            if path.startswith("/v1/tasks/{id}"):
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {"id": "$response.body#/id"},
                    "description": f"{method.upper()} {path} of the created task",
                }
    doc["paths"]["/v1/tasks"]["post"]["responses"]["201"]["links"] = links
    return doc
