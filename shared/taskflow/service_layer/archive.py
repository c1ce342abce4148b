"""The audit archive: audit rows older than the retention period move to object storage.

One run takes the oldest rows in bounded batches. Each batch becomes one gzip JSON-lines object
(``audit/YYYY/MM/DD/<sha256 prefix>.jsonl.gz``, named by its content, so a retried batch writes
the same object again instead of a second one), written through the object store, read back and
checked (row count and sha256), and only then recorded in the manifest and deleted from the
database, in one transaction. A failure at any step deletes nothing; the next run retries.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskflow.domain import model
from taskflow.service_layer.ports import Clock, ObjectStore
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger("taskflow.archive")

RETENTION_KEY = "audit_retention_days"
BATCH_KEY = "audit_archive_batch"
MAX_OBJECTS_KEY = "audit_archive_max_objects"
# one daily run moves up to 200 x 1000 rows; a larger backlog continues the next day
DEFAULTS = {RETENTION_KEY: "90", BATCH_KEY: "1000", MAX_OBJECTS_KEY: "200"}
# the exports function's route for the daily run, triggered by a cron binding of its own
# (archive-cron: the stack, the chart) or embedded mode's timer; not the exports' housekeeping cron
CRON_ROUTE = "/cron/archive"
DAILY = 24 * 3600
CONTENT_TYPE = "application/gzip"


class ArchiveError(RuntimeError):
    """An object did not read back as written: nothing was deleted."""


@dataclass
class ArchiveResult:
    objects: int = 0
    rows: int = 0

    def to_api(self) -> dict[str, int]:
        return {"archived_objects": self.objects, "archived_rows": self.rows}


def _line(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "task_id": row["task_id"],
        "owner_id": row["owner_id"],
        "type": row["type"],
        "time": model.format_time(row["time"]),
        "actor": row["actor"],
        "changes": row["changes"],
        "recorded_at": model.format_time(row["recorded_at"]),
    }


def encode(rows: list[dict[str, Any]]) -> bytes:
    """The rows as gzip JSON lines; the same rows give the same bytes (no gzip timestamp)."""
    text = "".join(json.dumps(_line(r), sort_keys=True, separators=(",", ":")) + "\n" for r in rows)
    return gzip.compress(text.encode(), mtime=0)


def object_key(rows: list[dict[str, Any]], body: bytes) -> str:
    oldest: datetime = rows[0]["time"]
    return f"audit/{oldest:%Y/%m/%d}/{hashlib.sha256(body).hexdigest()[:24]}.jsonl.gz"


def decode(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]


def archive_audit(
    uow: AbstractUnitOfWork,
    clock: Clock,
    store: ObjectStore,
    retention_days: int,
    batch: int = 1000,
    max_objects: int = 50,
) -> ArchiveResult:
    """Move audit rows older than ``retention_days`` to the object store (at most ``max_objects``
    objects of ``batch`` rows this run)."""
    now = clock()
    cutoff = now - timedelta(days=retention_days)
    result = ArchiveResult()
    for _ in range(max_objects):
        with uow:
            rows = uow.data.archivable_audit(cutoff, batch)
        if not rows:
            break
        body = encode(rows)
        digest = hashlib.sha256(body).hexdigest()
        key = object_key(rows, body)
        store.put(key, body, CONTENT_TYPE)
        back = store.get(key)
        if hashlib.sha256(back).hexdigest() != digest or len(decode(back)) != len(rows):
            raise ArchiveError(f"{key} did not read back as written; nothing deleted")
        tasks: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = tasks.setdefault(r["task_id"], {"object_key": key, "task_id": r["task_id"], "newest": r["time"]})
            entry["owner_id"] = r["owner_id"]
            entry["newest"] = max(entry["newest"], r["time"])
        manifest = {
            "object_key": key,
            "rows": len(rows),
            "sha256": digest,
            "oldest": rows[0]["time"],
            "newest": max(r["time"] for r in rows),
            "created_at": clock(),
        }
        with uow:
            if uow.data.record_archive(manifest, list(tasks.values())):
                deleted = uow.data.delete_audit([r["event_id"] for r in rows])
            else:
                deleted = 0  # another run recorded this very object (same content) and deleted its rows
            uow.commit(clock())
        result.objects += 1
        result.rows += deleted
        log.info("archived %d audit rows to %s", deleted, key)
    return result


def verify_object(store: ObjectStore, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """An archive object's rows, after checking it against its manifest row."""
    body = store.get(manifest["object_key"])
    rows = decode(body)
    if hashlib.sha256(body).hexdigest() != manifest["sha256"] or len(rows) != manifest["rows"]:
        raise ArchiveError(f"{manifest['object_key']} does not match its manifest")
    return rows


def archived_before(uow: AbstractUnitOfWork, owner_id: str, task_id: str) -> str | None:
    """The time up to which this task's history was archived (None when nothing was)."""
    with uow:
        return model.format_time(uow.data.archived_before(task_id, owner_id))
