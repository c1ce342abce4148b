"""Indexes for the sorts 0004 left to a sort of every task of the user: `-due_at` (due dates
descending, undated last), `priority` and `-priority` (then creation time), and the web app's
"Importance" (`-priority,due_at`). Each is served by an ordered index scan that stops after
`limit` rows (bench/README.md has each plan).

The priority index grows from (owner, status, priority) to (owner, status, priority, created_at,
id): it still serves the priority filter and now `sort=priority` too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")


def _indexes(dialect: str) -> dict[str, list[str | sa.TextClause]]:
    # SQLite puts NULLs last in a descending index already and has no NULLS LAST in CREATE INDEX.
    due_desc = sa.text("due_at DESC NULLS LAST") if dialect == "postgresql" else sa.text("due_at DESC")
    return {
        # sort=-due_at: due dates descending, undated tasks last, then creation order
        "ix_tasks_owner_status_due_desc": ["owner_id", "status", due_desc, "created_at", "id"],
        # sort=priority (and, backwards, -priority,-created_at); the priority filter
        "ix_tasks_owner_status_priority": ["owner_id", "status", "priority", "created_at", "id"],
        # sort=-priority
        "ix_tasks_owner_status_priority_desc": ["owner_id", "status", sa.text("priority DESC"), "created_at", "id"],
        # sort=-priority,due_at (the web app's "Importance")
        "ix_tasks_owner_status_priority_due": [
            "owner_id",
            "status",
            sa.text("priority DESC"),
            "due_at",
            "created_at",
            "id",
        ],
    }


def upgrade() -> None:
    op.drop_index("ix_tasks_owner_status_priority", table_name="tasks")
    for name, columns in _indexes(op.get_bind().dialect.name).items():
        op.create_index(name, "tasks", columns, postgresql_where=_LIVE, sqlite_where=_LIVE)


def downgrade() -> None:
    for name in _indexes(op.get_bind().dialect.name):
        op.drop_index(name, table_name="tasks")
    op.create_index(
        "ix_tasks_owner_status_priority",
        "tasks",
        ["owner_id", "status", "priority"],
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
