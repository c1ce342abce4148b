"""User exports: requested through the API, written asynchronously by the ``exports`` function.

``request_export`` records a pending export and its ``export.requested`` event in one transaction;
the exports function builds the document (iCalendar or JSON), writes it through the object store
port (a Dapr output binding) and marks the export ready; ``export_status`` answers with a download
URL that expires. Exports older than seven days are deleted, object first.

Housekeeping (the exports function's cron, every few minutes): an export still pending after
``PENDING_LIMIT`` (the object store never answered, or the event was dead-lettered) becomes
``failed`` with a reason; objects under ``exports/`` that no ready export points to (a crash between
the upload and the commit, or an upload that finished after its export was failed) are deleted once
they are ``ORPHAN_GRACE`` old.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from taskflow import events
from taskflow.domain import ical, model
from taskflow.domain.query import TaskQuery
from taskflow.service_layer.errors import RetryableError
from taskflow.service_layer.ports import Clock, ObjectStore
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger("taskflow.exports")

FORMATS: dict[str, tuple[str, str]] = {
    "ics": ("text/calendar; charset=utf-8", "taskflow-tasks.ics"),
    "json": ("application/json", "taskflow-export.json"),
}
DOWNLOAD_TTL = 15 * 60
RETENTION = timedelta(days=7)
PENDING_LIMIT = timedelta(minutes=10)
ORPHAN_GRACE = timedelta(hours=1)
TIMED_OUT = "the object store did not accept the export within 10 minutes; request a new export"
EXPORTS_PREFIX = "exports/"
SCHEMA_VERSION = 1
_PAGE = 200


def owner_prefix(owner_id: str) -> str:
    """The object-key folder of one user's exports (user ids are free text: hashed)."""
    return EXPORTS_PREFIX + hashlib.sha256(owner_id.encode()).hexdigest()[:32] + "/"


def object_key(row: dict[str, Any]) -> str:
    """Where an export's file goes: ``exports/<owner hash>/<export id>/<file name>``."""
    return owner_prefix(row["owner_id"]) + f"{row['id']}/{FORMATS[row['format']][1]}"


# --- the documents -------------------------------------------------------------------------


def all_tasks(uow: AbstractUnitOfWork, clock: Clock, owner_id: str) -> list[model.Task]:
    """Every live task of the user, open and completed, oldest first."""
    out: list[model.Task] = []
    cursor: str | None = None
    while True:
        query = TaskQuery(status="all", sort=("created_at",), limit=_PAGE, cursor=cursor)
        with uow:
            page, cursor = uow.tasks.list(owner_id, query, clock())
        out += page
        if cursor is None:
            return out


def build_ics(uow: AbstractUnitOfWork, clock: Clock, owner_id: str) -> bytes:
    return ical.to_calendar(all_tasks(uow, clock, owner_id), clock())


def _history_entry(row: dict[str, Any], archived: bool) -> dict[str, Any]:
    time = row["time"]
    return {
        "task_id": row["task_id"],
        "event_id": row["event_id"],
        "type": row["type"],
        "time": model.format_time(time) if isinstance(time, datetime) else time,
        "actor": row["actor"],
        "changes": row["changes"],
        "archived": archived,
    }


def archived_history(uow: AbstractUnitOfWork, store: ObjectStore | None, owner_id: str) -> list[dict[str, Any]]:
    """The user's audit entries that the archive moved to object storage (read back from it)."""
    with uow:
        keys = uow.data.archive_keys_of_owner(owner_id)
    if keys and store is None:
        raise RetryableError("archived history needs the object store")
    out = []
    for key in keys:
        try:
            raw = gzip.decompress(store.get(key))  # type: ignore[union-attr]
        except Exception as exc:
            raise RetryableError(f"archive object {key} unreadable: {type(exc).__name__}") from exc
        for line in raw.splitlines():
            row = json.loads(line)
            if row.get("owner_id") == owner_id:
                out.append(_history_entry(row, archived=True))
    return out


def build_json(uow: AbstractUnitOfWork, clock: Clock, owner_id: str, store: ObjectStore | None) -> dict[str, Any]:
    """The user's whole account as one document (schema in docs/data.md)."""
    now = clock()
    tasks = [t.to_api() for t in all_tasks(uow, clock, owner_id)]
    history = archived_history(uow, store, owner_id)
    with uow:
        history += [_history_entry(r, archived=False) for r in uow.data.audit_of_owner(owner_id)]
        notes = uow.notifications.list(owner_id, 1_000_000)
        webhook_url = uow.settings.get(owner_id)
    history.sort(key=lambda e: (e["task_id"], e["time"], e["event_id"]))
    return {
        "schema": "https://taskflow.dev/schemas/export/v1",
        "version": SCHEMA_VERSION,
        "exported_at": model.format_time(now),
        "user": owner_id,
        "tasks": tasks,
        "notifications": [
            {
                "id": n["id"],
                "task_id": n["task_id"],
                "title": n["title"],
                "fire_at": model.format_time(n["fire_at"]),
                "created_at": model.format_time(n["created_at"]),
                "late": bool(n["late"]),
            }
            for n in notes
        ],
        "settings": {"webhook_url": webhook_url},
        "history": history,
    }


def render(uow: AbstractUnitOfWork, clock: Clock, owner_id: str, fmt: str, store: ObjectStore | None) -> bytes:
    if fmt == "ics":
        return build_ics(uow, clock, owner_id)
    return json.dumps(build_json(uow, clock, owner_id, store), indent=1, ensure_ascii=False).encode()


# --- the asynchronous export ---------------------------------------------------------------


def request_export(uow: AbstractUnitOfWork, clock: Clock, owner_id: str, fmt: str) -> dict[str, Any]:
    """A pending export and its ``export.requested`` event, in one transaction."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    now = clock()
    export_id = str(uuid.uuid4())
    row: dict[str, Any] = {
        "id": export_id,
        "owner_id": owner_id,
        "format": fmt,
        "status": "pending",
        "created_at": now,
        "expires_at": now + RETENTION,
    }
    with uow:
        uow.data.add_export(row)
        uow.emit(events.export_requested(export_id, owner_id, fmt, now, uow.source))
        uow.commit(now)
    return row


def run_export(uow: AbstractUnitOfWork, clock: Clock, store: ObjectStore, received: events.Received) -> str:
    """Build and store one requested export; ``duplicate`` when it was already settled."""
    data = received.data
    assert isinstance(data, events.ExportRequestedData)
    with uow:
        row = uow.data.get_export(data.export_id, data.owner_id)
    if row is None or row["status"] != "pending":
        return "duplicate"
    content_type = FORMATS[row["format"]][0]
    key = object_key(row)
    try:
        body = render(uow, clock, row["owner_id"], row["format"], store)
    except RetryableError:
        raise
    except Exception as exc:
        log.exception("export %s failed", row["id"])
        return _finish(uow, clock, row["id"], "failed", reason=f"the export could not be built ({type(exc).__name__})")
    try:
        store.put(key, body, content_type)
    except Exception as exc:
        if clock() - row["created_at"] >= PENDING_LIMIT:
            log.warning("export %s failed: no object store write within the limit (%s)", row["id"], type(exc).__name__)
            return _finish(uow, clock, row["id"], "failed", reason=TIMED_OUT)
        raise RetryableError(f"object store write failed: {type(exc).__name__}: {exc}") from exc
    return _finish(uow, clock, row["id"], "ready", key=key)


def _finish(
    uow: AbstractUnitOfWork,
    clock: Clock,
    export_id: str,
    status: str,
    *,
    key: str | None = None,
    reason: str | None = None,
) -> str:
    now = clock()
    with uow:
        settled = uow.data.finish_export(export_id, status, now, object_key=key, reason=reason)
        uow.commit(now)
    return status if settled else "duplicate"


def export_status(
    uow: AbstractUnitOfWork, clock: Clock, store: ObjectStore | None, owner_id: str, export_id: str
) -> dict[str, Any]:
    """What ``GET /v1/exports/{id}`` shows; NotFound for another user's or an expired export."""
    with uow:
        row = uow.data.get_export(export_id, owner_id)
    if row is None or row["expires_at"] <= clock():
        raise model.NotFound(export_id)
    body: dict[str, Any] = {
        "id": row["id"],
        "format": row["format"],
        "status": row["status"],
        "created_at": model.format_time(row["created_at"]),
        "expires_at": model.format_time(row["expires_at"]),
    }
    if row["status"] == "ready" and store is not None:
        _, filename = FORMATS[row["format"]]
        body["download_url"] = store.download_url(row["object_key"], filename, DOWNLOAD_TTL)
        body["download_expires_at"] = model.format_time(clock() + timedelta(seconds=DOWNLOAD_TTL))
    if row["status"] == "failed":
        body["reason"] = row["reason"]
    return body


def fail_stale(uow: AbstractUnitOfWork, clock: Clock, limit: int = 500) -> int:
    """Exports pending for longer than ``PENDING_LIMIT`` become ``failed`` with a reason (a write
    that lands later is refused as a duplicate, and its object is swept as an orphan)."""
    now = clock()
    with uow:
        rows = uow.data.stale_exports(now - PENDING_LIMIT, limit)
        failed = sum(uow.data.finish_export(r["id"], "failed", now, reason=TIMED_OUT) for r in rows)
        uow.commit(now)
    if failed:
        log.warning("%d export(s) pending for more than %s marked failed", failed, PENDING_LIMIT)
    return failed


def sweep_orphans(uow: AbstractUnitOfWork, clock: Clock, store: ObjectStore, limit: int = 5000) -> int:
    """Delete export objects older than ``ORPHAN_GRACE`` that no ready export points to; looks at
    ``limit`` objects at most per run. Returns how many were deleted."""
    now = clock()
    deleted, seen, after = 0, 0, ""
    while seen < limit:
        page = store.list(EXPORTS_PREFIX, after, min(1000, limit - seen))
        if not page:
            break
        seen += len(page)
        after = page[-1].key
        ids = {o.key: o.key.split("/")[2] if o.key.count("/") >= 3 else "" for o in page}
        with uow:
            rows = uow.data.exports_by_id(sorted({i for i in ids.values() if i}))
        for obj in page:
            row = rows.get(ids[obj.key])
            wanted = row is not None and row["status"] in ("ready", "pending") and object_key(row) == obj.key
            if not wanted and obj.modified <= now - ORPHAN_GRACE:
                store.delete(obj.key)
                deleted += 1
    if deleted:
        log.info("deleted %d export object(s) without a ready export", deleted)
    return deleted


def purge_expired(uow: AbstractUnitOfWork, clock: Clock, store: ObjectStore, limit: int = 500) -> int:
    """Delete exports older than the retention period: the object first, then the record."""
    now = clock()
    with uow:
        rows = uow.data.expired_exports(now, limit)
    for row in rows:
        if row["object_key"]:
            store.delete(row["object_key"])
        with uow:
            uow.data.delete_export(row["id"])
            uow.commit(now)
    return len(rows)
