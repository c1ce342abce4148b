"""SQLAlchemy Core tables: the one definition of the schema. The Alembic migrations create it, and
``tests/integration/test_schema.py`` fails when the two disagree (autogenerate finds a difference).
Only full-text search (a generated tsvector column and its GIN index on PostgreSQL, an FTS5 table
and triggers on SQLite) and the GIN indexes of owner-qualified tag and word-prefix keys (PostgreSQL,
migrations 0006 and 0007) live in the migrations alone: the ORM has no words for those."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(255), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("recurrence", JSON(none_as_null=True), nullable=True),
    Column("reminders", JSON, nullable=False),
    Column("series_id", String(36), nullable=True),
    Column("series_start", UTCDateTime, nullable=True),
    Column("occurrence", Integer, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    UniqueConstraint("series_id", "occurrence", name="uq_tasks_series_occurrence"),
)
_LIVE = text("deleted_at IS NULL")
# The list queries: one user's live tasks by status, in the default order (due, priority desc, ...).
Index(
    "ix_tasks_owner_status_order",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.due_at,
    tasks.c.priority.desc(),
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
# sort=priority (backwards: -priority,-created_at) and the priority filter (migration 0005)
Index(
    "ix_tasks_owner_status_priority",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.priority,
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index("ix_tasks_owner_created", tasks.c.owner_id, tasks.c.created_at, postgresql_where=_LIVE, sqlite_where=_LIVE)
# The other documented sort orders (migration 0004; bench/README.md has the plans).
Index(
    "ix_tasks_owner_status_priority_title",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.priority.desc(),
    func.lower(tasks.c.title),
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index(
    "ix_tasks_owner_status_title",
    tasks.c.owner_id,
    tasks.c.status,
    func.lower(tasks.c.title),
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index(
    "ix_tasks_owner_status_updated",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.updated_at,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
# The descending sorts (migration 0005): -due_at (undated last; SQLite's DESC puts NULLs last by
# itself), -priority, and -priority,due_at (the web app's "Importance").
Index(
    "ix_tasks_owner_status_due_desc",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.due_at.desc().nulls_last(),
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index(
    "ix_tasks_owner_status_priority_desc",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.priority.desc(),
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index(
    "ix_tasks_owner_status_priority_due",
    tasks.c.owner_id,
    tasks.c.status,
    tasks.c.priority.desc(),
    tasks.c.due_at,
    tasks.c.created_at,
    tasks.c.id,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)

task_tags = Table(
    "task_tags",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("tag", String(40), primary_key=True),
    Column("owner_id", String(255), nullable=False),
    Index("ix_task_tags_owner_tag", "owner_id", "tag", "task_id"),  # covering: tag filters read no table rows
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("topic", String(100), nullable=False),
    Column("partition_key", String(100), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
)
_PENDING = text("sent_at IS NULL")
Index("ix_outbox_pending", outbox.c.seq, postgresql_where=_PENDING, sqlite_where=_PENDING)

reminders = Table(
    "reminders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("task_id", String(36), nullable=False),
    Column("owner_id", String(255), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("late", Boolean, nullable=False, default=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)
_DUE = text("status = 'pending'")
Index("ix_reminders_due", reminders.c.fire_at, postgresql_where=_DUE, sqlite_where=_DUE)
Index("ix_reminders_task", reminders.c.task_id)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("owner_id", String(255), nullable=False),
    Column("task_id", String(36), nullable=False),
    Column("reminder_id", String(36), nullable=True),
    Column("title", String(200), nullable=False),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("webhook_status", String(16), nullable=False),
    Column("webhook_attempts", Integer, nullable=False, default=0),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ix_notifications_owner_created", "owner_id", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("task_id", String(36), nullable=False),
    Column("owner_id", String(255), nullable=False),
    Column("type", String(100), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("changes", JSON, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_audit_task_time", "task_id", "time"),
)

user_settings = Table(
    "user_settings",
    metadata,
    Column("owner_id", String(255), primary_key=True),
    Column("webhook_url", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

kv_state = Table(
    "kv_state",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("value", Text, nullable=False),
    Column("etag", String(36), nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
)

# The table Dapr's configuration.postgresql component reads (column names are its contract).
taskflow_config = Table(
    "taskflow_config",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("metadata", JSON(none_as_null=True), nullable=True),
)

# --- data in and out (issue 11) ------------------------------------------------------------

# Which task an imported iCalendar UID became, per user: importing the same file again updates.
task_imports = Table(
    "task_imports",
    metadata,
    Column("owner_id", String(255), primary_key=True),
    Column("uid", String(255), primary_key=True),
    Column("task_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Asynchronous exports: requested by tasks-api, written by the exports function.
exports = Table(
    "exports",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(255), nullable=False),
    Column("format", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("object_key", String(512), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_exports_owner_created", "owner_id", "created_at"),
    Index("ix_exports_expires", "expires_at"),
)

# The audit archive's manifest: one row per object written, verified (read back) before deleting.
audit_archive = Table(
    "audit_archive",
    metadata,
    Column("object_key", String(512), primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("oldest", UTCDateTime, nullable=False),
    Column("newest", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Which tasks (and owners) each archive object holds rows of: /history's archived_before and the
# JSON export read archived entries back through it.
audit_archive_tasks = Table(
    "audit_archive_tasks",
    metadata,
    Column("object_key", String(512), primary_key=True),
    Column("task_id", String(36), primary_key=True),
    Column("owner_id", String(255), nullable=False),
    Column("newest", UTCDateTime, nullable=False),
    Index("ix_audit_archive_tasks_task", "task_id"),
    Index("ix_audit_archive_tasks_owner", "owner_id"),
)
