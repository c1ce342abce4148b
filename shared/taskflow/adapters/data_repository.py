"""The SQL of data in and out: the import UID map, export records, the audit archive's manifest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from taskflow.adapters.tables import audit_archive, audit_archive_tasks, audit_log, exports, task_imports


class DataRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- imports ---------------------------------------------------------------------------

    def imported_task(self, owner_id: str, uid: str) -> str | None:
        stmt = select(task_imports.c.task_id).where(task_imports.c.owner_id == owner_id, task_imports.c.uid == uid)
        return self.conn.execute(stmt).scalar()

    def remember_import(self, owner_id: str, uid: str, task_id: str, now: datetime) -> None:
        """Map ``uid`` to ``task_id`` for this user (replacing a mapping to a deleted task)."""
        self.conn.execute(delete(task_imports).where(task_imports.c.owner_id == owner_id, task_imports.c.uid == uid))
        self.conn.execute(insert(task_imports).values(owner_id=owner_id, uid=uid, task_id=task_id, created_at=now))

    # --- exports ---------------------------------------------------------------------------

    def add_export(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(exports).values(**row))

    def get_export(self, export_id: str, owner_id: str | None = None) -> dict[str, Any] | None:
        stmt = select(exports).where(exports.c.id == export_id)
        if owner_id is not None:
            stmt = stmt.where(exports.c.owner_id == owner_id)
        row = self.conn.execute(stmt).first()
        return dict(row._mapping) if row else None

    def finish_export(
        self, export_id: str, status: str, now: datetime, object_key: str | None = None, reason: str | None = None
    ) -> bool:
        """Settle a pending export; False when it was already settled (a duplicate delivery)."""
        stmt = (
            update(exports)
            .where(exports.c.id == export_id, exports.c.status == "pending")
            .values(status=status, object_key=object_key, reason=reason, finished_at=now)
        )
        return bool(self.conn.execute(stmt).rowcount)

    def expired_exports(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        stmt = select(exports).where(exports.c.expires_at <= now).order_by(exports.c.expires_at).limit(limit)
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def stale_exports(self, created_before: datetime, limit: int) -> list[dict[str, Any]]:
        stmt = (
            select(exports)
            .where(exports.c.status == "pending", exports.c.created_at < created_before)
            .order_by(exports.c.created_at)
            .limit(limit)
        )
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def exports_by_id(self, export_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not export_ids:
            return {}
        stmt = select(exports).where(exports.c.id.in_(list(export_ids)))
        return {r.id: dict(r._mapping) for r in self.conn.execute(stmt)}

    def delete_export(self, export_id: str) -> None:
        self.conn.execute(delete(exports).where(exports.c.id == export_id))

    # --- audit history of one user, and the archive -----------------------------------------

    def audit_of_owner(self, owner_id: str) -> list[dict[str, Any]]:
        stmt = (
            select(audit_log)
            .where(audit_log.c.owner_id == owner_id)
            .order_by(audit_log.c.task_id, audit_log.c.time, audit_log.c.recorded_at)
        )
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def archivable_audit(self, before: datetime, limit: int) -> list[dict[str, Any]]:
        """The oldest audit rows recorded before ``before``, in a stable order."""
        stmt = (
            select(audit_log)
            .where(audit_log.c.time < before)
            .order_by(audit_log.c.time, audit_log.c.event_id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def archive_recorded(self, object_key: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(audit_archive).where(audit_archive.c.object_key == object_key)).first()
        return dict(row._mapping) if row else None

    def record_archive(self, manifest: dict[str, Any], tasks: Sequence[dict[str, Any]]) -> bool:
        """Write the manifest row of a verified object and its task index; False when already recorded."""
        if self.archive_recorded(manifest["object_key"]) is not None:
            return False
        self.conn.execute(insert(audit_archive).values(**manifest))
        if tasks:
            self.conn.execute(insert(audit_archive_tasks), list(tasks))
        return True

    def delete_audit(self, event_ids: Sequence[str]) -> int:
        if not event_ids:
            return 0
        return int(self.conn.execute(delete(audit_log).where(audit_log.c.event_id.in_(event_ids))).rowcount)

    def archived_before(self, task_id: str, owner_id: str) -> datetime | None:
        stmt = select(func.max(audit_archive_tasks.c.newest)).where(
            audit_archive_tasks.c.task_id == task_id, audit_archive_tasks.c.owner_id == owner_id
        )
        value: datetime | None = self.conn.execute(stmt).scalar()
        return value

    def archive_keys_of_owner(self, owner_id: str) -> list[str]:
        stmt = (
            select(audit_archive_tasks.c.object_key)
            .where(audit_archive_tasks.c.owner_id == owner_id)
            .distinct()
            .order_by(audit_archive_tasks.c.object_key)
        )
        return list(self.conn.execute(stmt).scalars())
