"""The REST API of ``tasks-api`` (DESIGN §4), as one callable taking a Flask request and the root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from functools import cached_property, partial
from typing import Any, TypeVar

from flask import Request, Response
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from taskflow import telemetry
from taskflow.adapters.availability import backing_service_down
from taskflow.api import auth, data_routes, preview, signin, warmup, webapp
from taskflow.api.http import (
    HttpError,
    invalid,
    json_response,
    over_limit,
    problem,
    read_model,
)
from taskflow.api.schemas import ListQuery, TaskCreate, TaskPatch, UserSettings
from taskflow.bootstrap import Root
from taskflow.domain import limits, model
from taskflow.domain.query import BadCursor
from taskflow.service_layer import notifications, outbox, tasks
from taskflow.service_layer.group_commit import GroupCommit
from taskflow.service_layer.ports import StateConflict
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger("taskflow.api")
T = TypeVar("T")

IDEMPOTENCY_TTL = 24 * 3600
IDEMPOTENCY_CLAIM_TTL = 60
RETRY_AFTER = "2"  # seconds, on a 503 while the database or the sidecar is unreachable
_IDEMPOTENT_IDS = uuid.UUID("8d5b0c53-3c1e-4b5e-9a57-3f1f7f0e6a21")  # namespace of ids from Idempotency-Keys

_routes = Map(
    [
        Rule("/healthz", endpoint="healthz", methods=["GET"]),
        Rule("/readyz", endpoint="readyz", methods=["GET"]),
        Rule("/v1/openapi.json", endpoint="openapi", methods=["GET"]),
        Rule("/v1/tasks", endpoint="create", methods=["POST"]),
        Rule("/v1/tasks", endpoint="list", methods=["GET"]),
        Rule("/v1/tasks/<task_id>", endpoint="get", methods=["GET"]),
        Rule("/v1/tasks/<task_id>", endpoint="patch", methods=["PATCH"]),
        Rule("/v1/tasks/<task_id>", endpoint="delete", methods=["DELETE"]),
        Rule("/v1/tasks/<task_id>/complete", endpoint="complete", methods=["POST"]),
        Rule("/v1/tasks/<task_id>/reopen", endpoint="reopen", methods=["POST"]),
        Rule("/v1/tasks/<task_id>/history", endpoint="history", methods=["GET"]),
        Rule("/v1/tags", endpoint="tags", methods=["GET"]),
        Rule("/v1/notifications", endpoint="notifications", methods=["GET"]),
        Rule("/v1/settings", endpoint="settings_get", methods=["GET"]),
        Rule("/v1/settings", endpoint="settings_put", methods=["PUT"]),
        Rule("/v1/recurrence/preview", endpoint="recurrence_preview", methods=["POST"]),
        Rule("/v1/auth/options", endpoint="signin_options", methods=["GET"]),
        Rule("/v1/auth/dev-token", endpoint="dev_token", methods=["POST"]),
        *data_routes.RULES,
    ],
    strict_slashes=False,
)

PUBLIC = {"healthz", "readyz", "openapi", "signin_options", "dev_token", *data_routes.PUBLIC}


def handle(request: Request, root: Root) -> Response:
    adapter = _routes.bind("localhost", path_info=request.path)
    try:
        if webapp.is_asset_request(request):
            telemetry.set_route("/{asset}")
            web_dir = root.component("web_dir", lambda: webapp.web_dir(root.settings.web_dir))
            return webapp.serve(request, root.settings, web_dir)
        try:
            rule, args = adapter.match(request.path, method=request.method, return_rule=True)
        except NotFound as exc:
            raise HttpError(404, "Not found", f"no route {request.path}", slug="not-found") from exc
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            raise HttpError(
                405, "Method not allowed", f"use one of {allowed}", slug="method", headers={"Allow": allowed}
            ) from exc
        endpoint = str(rule.endpoint)
        telemetry.set_route(_template(rule.rule))
        view = _VIEWS[endpoint]
        user = None if endpoint in PUBLIC else _user(request, root)
        if len(request.query_string) > limits.QUERY_STRING.max:
            message = f"the query string must be at most {limits.QUERY_STRING.max} bytes"
            raise over_limit(limits.QUERY_STRING, limits.QUERY_STRING.max, message, status=414)
        return view(Call(request, root, user), **args)
    except HttpError as err:
        return problem(err, request.path)
    except model.NotFound:
        return problem(HttpError(404, "Not found", "no such task", slug="not-found"), request.path)
    except model.PreconditionFailed as exc:
        return problem(
            HttpError(412, "Precondition failed", f"If-Match does not match the current ETag {exc}", slug="etag"),
            request.path,
        )
    except model.InvalidTask as exc:
        return problem(invalid(exc.field, exc.message), request.path)
    except BadCursor as exc:
        return problem(invalid("cursor", str(exc), "Invalid query parameter"), request.path)
    except limits.LimitExceeded as exc:
        return problem(over_limit(exc.limit, exc.maximum, exc.message), request.path)
    except Exception as exc:
        if backing_service_down(exc):  # PostgreSQL or the sidecar restarting: the client retries
            log.warning("%s %s: backing service unavailable: %s", request.method, request.path, type(exc).__name__)
            unavailable = HttpError(
                503,
                "Service unavailable",
                "the database or the Dapr sidecar is unreachable; retry the request",
                slug="unavailable",
                headers={"Retry-After": RETRY_AFTER},
            )
            return problem(unavailable, request.path)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(HttpError(500, "Internal error", "the server failed; try again"), request.path)


def _template(rule: str) -> str:
    """``/v1/tasks/<task_id>`` as the route template ``/v1/tasks/{task_id}``."""
    return rule.replace("<", "{").replace(">", "}")


def _tokens(root: Root) -> auth.Tokens:
    return root.component("tokens", lambda: auth.Tokens(root.settings, lambda: root.jwt_secret))


def _user(request: Request, root: Root) -> str:
    try:
        return _tokens(root).authenticate(request.headers.get("Authorization"))
    except auth.Unauthorized as exc:
        challenge = f'Bearer realm="taskflow", error="{exc.error}", error_description="{exc.message}"'
        raise HttpError(
            401, "Unauthorized", exc.message, slug="unauthorized", headers={"WWW-Authenticate": challenge}
        ) from exc


class Call:
    """One request with what its view needs: the root's unit of work, clock and ports, and the user."""

    def __init__(self, request: Request, root: Root, user: str | None) -> None:
        self.request = request
        self.root = root
        self._user = user

    @cached_property
    def uow(self) -> AbstractUnitOfWork:
        """Built when a view first needs it: /healthz must not reach the database or its secret."""
        return self.root.uow()

    @property
    def user(self) -> str:
        assert self._user is not None  # every route outside PUBLIC is authenticated
        return self._user

    def write(self, action: Callable[[AbstractUnitOfWork], T]) -> T:
        """Run a write use case, then publish what it committed (the outbox relay sends the rest)."""
        result = action(self.uow)
        outbox.publish_committed(self.uow, self.root.publisher, self.root.clock)
        return result


def _task_response(task: model.Task, status: int = 200, extra: dict[str, str] | None = None) -> Response:
    headers = {"ETag": task.etag, **(extra or {})}
    return json_response(task.to_api(), status, headers)


# --- views ---------------------------------------------------------------------------------


def _healthz(call: Call) -> Response:
    return json_response({"status": "ok"})


def _readyz(call: Call) -> Response:
    try:
        call.root.check_database()
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise HttpError(503, "Not ready", "the database is unreachable", slug="not-ready") from exc
    try:
        call.root.check_sidecar()
    except Exception as exc:
        log.warning("readiness check failed: the Dapr sidecar: %s", type(exc).__name__)
        raise HttpError(503, "Not ready", "the Dapr sidecar is not ready", slug="not-ready") from exc
    warmup.once(call.root, "tasks-api", warmup.tasks_api)  # the first creates then cost what later ones do
    return json_response({"status": "ready"})


def _openapi(call: Call) -> Response:
    from taskflow.api.openapi import document

    return json_response(document())


def _create(call: Call) -> Response:
    cmd, raw = read_model(call.request, TaskCreate)
    key = call.request.headers.get("Idempotency-Key")
    if key is None:
        return _do_create(call, cmd)
    if not 1 <= len(key) <= 255:
        raise HttpError(422, "Invalid Idempotency-Key", "the key must be 1..255 characters", slug="idempotency")
    return _idempotent(call, key, raw, lambda: _do_create_once(call, cmd, idempotent_task_id(call.user, key)))


def _group_commit(root: Root) -> GroupCommit:
    def build() -> GroupCommit:
        publish = partial(_publish_committed, root)
        return GroupCommit(root.uow, root.clock, publish, root.settings.quotas)

    return root.component("group_commit", build)


def _publish_committed(root: Root, uow: AbstractUnitOfWork) -> None:
    outbox.publish_committed(uow, root.publisher, root.clock)


def _do_create(call: Call, cmd: TaskCreate) -> Response:
    quotas = call.root.settings.quotas
    if call.root.settings.group_commit:
        task = _group_commit(call.root).create(call.user, cmd.to_fields())
    else:
        task = call.write(lambda uow: tasks.create_task(uow, call.root.clock, call.user, cmd.to_fields(), quotas))
    return _task_response(task, 201, {"Location": f"/v1/tasks/{task.id}"})


def idempotent_task_id(user: str, key: str) -> str:
    """The id of the task one user's Idempotency-Key creates: the same on every retry, so the
    database itself refuses a second task even when the idempotency record was lost (a crash
    between the commit and the record, or the record's write failing)."""
    return str(uuid.uuid5(_IDEMPOTENT_IDS, f"{user}\x00{key}"))


def _do_create_once(call: Call, cmd: TaskCreate, task_id: str) -> Response:
    task, created = call.write(
        lambda uow: tasks.create_task_once(
            uow, call.root.clock, call.user, task_id, cmd.to_fields(), call.root.settings.quotas
        )
    )
    extra = {"Location": f"/v1/tasks/{task.id}"}
    if not created:
        extra["Idempotent-Replayed"] = "true"
    return _task_response(task, 201, extra)


def idempotency_state_key(user: str, key: str) -> str:
    """The state-store key of one user's Idempotency-Key (hashed: keys are client-chosen text)."""
    return "idem:" + hashlib.sha256(f"{user}\x00{key}".encode()).hexdigest()


def _idempotent(call: Call, key: str, raw: bytes, run: Callable[[], Response]) -> Response:
    """Idempotency-Key (per user, 24 h): same key and body replay the first answer."""
    store = call.root.state
    state_key = idempotency_state_key(call.user, key)
    fingerprint = hashlib.sha256(json.dumps(json.loads(raw), sort_keys=True).encode()).hexdigest()

    def replay_or_refuse(record: dict[str, Any]) -> Response:
        if record.get("fingerprint") != fingerprint:
            raise HttpError(
                422,
                "Idempotency-Key reused",
                "this Idempotency-Key was used with a different request body",
                slug="idempotency",
            )
        if record.get("state") != "done":
            raise HttpError(
                409, "Request in progress", "a request with this Idempotency-Key is still running", slug="idempotency"
            )
        resp = Response(record["body"], status=record["status"], mimetype="application/json")
        for name, value in record["headers"].items():
            resp.headers[name] = value
        resp.headers["Idempotent-Replayed"] = "true"
        return resp

    existing, _ = store.get(state_key)
    if existing is not None:
        return replay_or_refuse(json.loads(existing))
    claim = json.dumps({"state": "running", "fingerprint": fingerprint})
    try:
        store.save(state_key, claim, first_write=True, ttl_seconds=IDEMPOTENCY_CLAIM_TTL)
    except StateConflict:
        current, _ = store.get(state_key)
        if current is None:
            raise HttpError(409, "Request in progress", "retry this request", slug="idempotency") from None
        return replay_or_refuse(json.loads(current))
    try:
        resp = run()
    except BaseException:
        with contextlib.suppress(Exception):  # the claim expires anyway; the error to report is run()'s
            store.delete(state_key)
        raise
    record = {
        "state": "done",
        "fingerprint": fingerprint,
        "status": resp.status_code,
        "headers": {k: v for k, v in resp.headers.items() if k in ("ETag", "Location")},
        "body": resp.get_data(as_text=True),
    }
    try:
        store.save(state_key, json.dumps(record), ttl_seconds=IDEMPOTENCY_TTL)
    except Exception as exc:  # the write is committed: answer it; a retry finds the task by its id
        log.warning("idempotency record not saved (%s); a retry is answered from the task", type(exc).__name__)
    return resp


def _list(call: Call) -> Response:
    query = ListQuery.parse(call.request.args)
    items, cursor = tasks.list_tasks(call.uow, call.root.clock, call.user, query)
    return json_response({"items": [t.to_api() for t in items], "next_cursor": cursor})


def _get(call: Call, task_id: str) -> Response:
    task = tasks.get_task(call.uow, call.user, task_id)
    etag = call.request.headers.get("If-None-Match")
    if etag and task.etag in [t.strip() for t in etag.split(",")]:
        return Response(status=304, headers={"ETag": task.etag})
    return _task_response(task)


def _patch(call: Call, task_id: str) -> Response:
    patch, _ = read_model(call.request, TaskPatch)
    if_match = call.request.headers.get("If-Match")
    task = call.write(
        lambda uow: tasks.update_task(
            uow, call.root.clock, call.user, task_id, patch.to_changes(), if_match, call.root.settings.quotas
        )
    )
    return _task_response(task)


def _delete(call: Call, task_id: str) -> Response:
    if_match = call.request.headers.get("If-Match")
    call.write(lambda uow: tasks.delete_task(uow, call.root.clock, call.user, task_id, if_match))
    return Response(status=204)


def _transition(
    action: Callable[[AbstractUnitOfWork, Any, str, str, str | None], model.Task],
) -> Callable[..., Response]:
    def view(call: Call, task_id: str) -> Response:
        if_match = call.request.headers.get("If-Match")
        task = call.write(lambda uow: action(uow, call.root.clock, call.user, task_id, if_match))
        return _task_response(task)

    return view


def _reopen(call: Call, task_id: str) -> Response:
    if_match = call.request.headers.get("If-Match")
    quotas = call.root.settings.quotas
    task = call.write(lambda uow: tasks.reopen_task(uow, call.root.clock, call.user, task_id, if_match, quotas))
    return _task_response(task)


def _history(call: Call, task_id: str) -> Response:
    tasks.get_task(call.uow, call.user, task_id)  # 404 unless it is this user's live task
    try:
        status, body = call.root.invoker.invoke(
            call.root.settings.audit_app_id, f"history/{task_id}", {"owner": call.user}
        )
    except Exception as exc:
        log.warning("history invocation failed: %s", exc)
        raise HttpError(502, "Bad gateway", "the audit service did not answer", slug="upstream") from exc
    if status != 200 or not isinstance(body, dict):
        raise HttpError(502, "Bad gateway", f"the audit service answered {status}", slug="upstream")
    out: dict[str, Any] = {"items": body.get("items", [])}
    if body.get("archived_before"):
        out["archived_before"] = body["archived_before"]  # older entries were moved to the audit archive
    return json_response(out)


def _tags(call: Call) -> Response:
    counts = tasks.tag_counts(call.uow, call.user)
    return json_response({"items": [{"name": n, "count": c} for n, c in counts]})


def _notifications(call: Call) -> Response:
    limit = call.request.args.get("limit", "100")
    if not limit.isdigit() or int(limit) < 1:
        raise invalid("limit", f"must be an integer 1..{limits.INBOX_PAGE.max}", "Invalid query parameter")
    if int(limit) > limits.INBOX_PAGE.max:
        message = f"limit must be at most {limits.INBOX_PAGE.max}"
        raise over_limit(limits.INBOX_PAGE, limits.INBOX_PAGE.max, message, field="limit")
    items = notifications.list_notifications(call.uow, call.user, int(limit))
    resp = json_response({"items": [n.model_dump() for n in items]})
    # An ETag of the body lets a polling client (the web app's inbox) get a bodiless 304.
    etag = '"' + hashlib.sha256(resp.get_data()).hexdigest()[:32] + '"'
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "no-cache"
    if etag in [t.strip() for t in call.request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    return resp


def _settings_get(call: Call) -> Response:
    return json_response({"webhook_url": notifications.get_settings(call.uow, call.user)})


def _settings_put(call: Call) -> Response:
    payload, _ = read_model(call.request, UserSettings)
    try:
        url = notifications.put_settings(call.uow, call.root.clock, call.root.webhooks, call.user, payload.webhook_url)
    except ValueError as exc:
        raise invalid("webhook_url", str(exc)) from exc
    return json_response({"webhook_url": url})


_VIEWS: dict[str, Callable[..., Response]] = {
    "healthz": _healthz,
    "readyz": _readyz,
    "openapi": _openapi,
    "create": _create,
    "list": _list,
    "get": _get,
    "patch": _patch,
    "delete": _delete,
    "complete": _transition(tasks.complete_task),
    "reopen": _reopen,
    "history": _history,
    "tags": _tags,
    "notifications": _notifications,
    "settings_get": _settings_get,
    "settings_put": _settings_put,
    "recurrence_preview": lambda call: preview.preview(call.request),
    "signin_options": lambda call: signin.options(call.request, call.root),
    "dev_token": lambda call: signin.dev_token(call.request, call.root),
    **data_routes.VIEWS,
}
