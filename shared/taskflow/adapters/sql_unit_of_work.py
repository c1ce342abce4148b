"""The unit of work on SQLAlchemy: one connection, one transaction, the SQL repositories."""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from taskflow.adapters import repository as repo
from taskflow.adapters.data_repository import DataRepository
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork


class SqlUnitOfWork(AbstractUnitOfWork):
    conn: Connection

    def __init__(self, engine: Engine, source: str = "/taskflow/tasks-api", *, rehearsal: bool = False) -> None:
        """A ``rehearsal`` runs every statement of its work and then rolls back instead of
        committing: nothing stays (warming a process up before it reports ready)."""
        super().__init__(source)
        self.engine = engine
        self.rehearsal = rehearsal

    def _begin(self) -> None:
        self.conn = self.engine.connect()
        self._tx = self.conn.begin()
        self._committed = False
        self.tasks = repo.TaskRepository(self.conn)
        self.outbox = repo.OutboxRepository(self.conn)
        self.reminders = repo.ReminderRepository(self.conn)
        self.audit = repo.AuditRepository(self.conn)
        self.notifications = repo.NotificationRepository(self.conn)
        self.settings = repo.SettingsRepository(self.conn)
        self.data = DataRepository(self.conn)

    def _commit(self) -> None:
        if self.rehearsal:
            self._tx.rollback()
        else:
            self._tx.commit()
        self._committed = True

    def _end(self) -> None:
        try:
            if not self._committed and self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()
