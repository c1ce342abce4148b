"""Initial schema: tasks, tags, outbox, reminders, notifications, audit, settings, state, config.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from taskflow.adapters.tables import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("recurrence", sa.JSON, nullable=True),
        sa.Column("reminders", sa.JSON, nullable=False),
        sa.Column("series_id", sa.String(36), nullable=True),
        sa.Column("series_start", UTCDateTime, nullable=True),
        sa.Column("occurrence", sa.Integer, nullable=False),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("series_id", "occurrence", name="uq_tasks_series_occurrence"),
    )
    # The list queries: one user's live tasks by status, then due date / priority / creation.
    live = sa.text("deleted_at IS NULL")
    op.create_index(
        "ix_tasks_owner_status_due", "tasks", ["owner_id", "status", "due_at"], postgresql_where=live, sqlite_where=live
    )
    op.create_index(
        "ix_tasks_owner_status_priority",
        "tasks",
        ["owner_id", "status", "priority"],
        postgresql_where=live,
        sqlite_where=live,
    )
    op.create_index(
        "ix_tasks_owner_created", "tasks", ["owner_id", "created_at"], postgresql_where=live, sqlite_where=live
    )

    op.create_table(
        "task_tags",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("tag", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_task_tags_owner_tag", "task_tags", ["owner_id", "tag"])

    op.create_table(
        "outbox",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("partition_key", sa.String(100), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    pending = sa.text("sent_at IS NULL")
    op.create_index("ix_outbox_pending", "outbox", ["seq"], postgresql_where=pending, sqlite_where=pending)

    op.create_table(
        "reminders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("fire_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fired_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    due = sa.text("status = 'pending'")
    op.create_index("ix_reminders_due", "reminders", ["fire_at"], postgresql_where=due, sqlite_where=due)
    op.create_index("ix_reminders_task", "reminders", ["task_id"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("reminder_id", sa.String(36), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("fire_at", UTCDateTime, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("webhook_status", sa.String(16), nullable=False),
        sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_notifications_owner_created", "notifications", ["owner_id", "created_at"])

    op.create_table(
        "audit_log",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_audit_task_time", "audit_log", ["task_id", "time"])

    op.create_table(
        "user_settings",
        sa.Column("owner_id", sa.String(255), primary_key=True),
        sa.Column("webhook_url", sa.Text, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "kv_state",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("etag", sa.String(36), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "taskflow_config",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
    )

    # Full-text search over title and description. The 'simple' configuration (no stemming,
    # no stop words) and FTS5's unicode61 tokenizer split and fold words the same way.
    if dialect == "postgresql":
        op.execute(
            "ALTER TABLE tasks ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
            "(setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('simple', coalesce(description, '')), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_tasks_search ON tasks USING GIN (search_vector)")
        # configuration.postgresql listens on this channel; the trigger announces every change.
        op.execute(
            """
            CREATE OR REPLACE FUNCTION taskflow_config_notify() RETURNS trigger AS $$
            DECLARE
              data json;
              notification json;
            BEGIN
              IF (TG_OP = 'DELETE') THEN
                data = row_to_json(OLD);
              ELSE
                data = row_to_json(NEW);
              END IF;
              notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
              PERFORM pg_notify('taskflow_config_changed', notification::text);
              RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER taskflow_config_changed AFTER INSERT OR UPDATE OR DELETE ON taskflow_config "
            "FOR EACH ROW EXECUTE FUNCTION taskflow_config_notify()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE tasks_fts USING fts5(title, description, content='tasks', "
            "content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute(
            "CREATE TRIGGER tasks_fts_ai AFTER INSERT ON tasks BEGIN "
            "INSERT INTO tasks_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description); END"
        )
        op.execute(
            "CREATE TRIGGER tasks_fts_ad AFTER DELETE ON tasks BEGIN "
            "INSERT INTO tasks_fts(tasks_fts, rowid, title, description) "
            "VALUES ('delete', old.rowid, old.title, old.description); END"
        )
        op.execute(
            "CREATE TRIGGER tasks_fts_au AFTER UPDATE OF title, description ON tasks BEGIN "
            "INSERT INTO tasks_fts(tasks_fts, rowid, title, description) "
            "VALUES ('delete', old.rowid, old.title, old.description); "
            "INSERT INTO tasks_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS taskflow_config_changed ON taskflow_config")
        op.execute("DROP FUNCTION IF EXISTS taskflow_config_notify()")
    elif dialect == "sqlite":
        op.execute("DROP TABLE IF EXISTS tasks_fts")
    for table in (
        "taskflow_config",
        "kv_state",
        "user_settings",
        "audit_log",
        "notifications",
        "reminders",
        "outbox",
        "task_tags",
        "tasks",
    ):
        op.drop_table(table)
