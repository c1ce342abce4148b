"""Indexes in the documented sort orders, so a sorted page reads about `limit` index entries
instead of sorting every task of the user, and tag filters answered from an index alone
(bench/README.md has each plan).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")
_INDEXES: dict[str, list[str | sa.TextClause]] = {
    # sort=-priority,title (and priority,-title backwards); created_at, id ties: incremental sort
    "ix_tasks_owner_status_priority_title": ["owner_id", "status", sa.text("priority DESC"), sa.text("lower(title)")],
    # sort=title and sort=-title
    "ix_tasks_owner_status_title": ["owner_id", "status", sa.text("lower(title)")],
    # sort=updated_at and sort=-updated_at
    "ix_tasks_owner_status_updated": ["owner_id", "status", "updated_at"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "tasks", columns, postgresql_where=_LIVE, sqlite_where=_LIVE)
    # Tag filters read (owner, tag) -> task ids from the index alone (index-only scans).
    op.drop_index("ix_task_tags_owner_tag", table_name="task_tags")
    op.create_index("ix_task_tags_owner_tag", "task_tags", ["owner_id", "tag", "task_id"])


def downgrade() -> None:
    op.drop_index("ix_task_tags_owner_tag", table_name="task_tags")
    op.create_index("ix_task_tags_owner_tag", "task_tags", ["owner_id", "tag"])
    for name in _INDEXES:
        op.drop_index(name, table_name="tasks")
