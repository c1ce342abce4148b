"""Unit of work: one connection, one transaction; commit once, roll back on any error."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from taskflow.adapters import repository as repo
from taskflow.events import Envelope


class UnitOfWork:
    conn: Connection

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending_events: list[Envelope] = []
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self.engine.connect()
        self._tx = self.conn.begin()
        self.tasks = repo.TaskRepository(self.conn)
        self.outbox = repo.OutboxRepository(self.conn)
        self.reminders = repo.ReminderRepository(self.conn)
        self.audit = repo.AuditRepository(self.conn)
        self.notifications = repo.NotificationRepository(self.conn)
        self.settings = repo.SettingsRepository(self.conn)
        return self

    def commit(self) -> None:
        self._tx.commit()
        self._committed = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self._committed and self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()
