"""Index in the default list order, so a page stops after `limit` rows instead of sorting them all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_tasks_owner_status_due", table_name="tasks")
    op.create_index(
        "ix_tasks_owner_status_order",
        "tasks",
        ["owner_id", "status", "due_at", sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_status_order", table_name="tasks")
    op.create_index(
        "ix_tasks_owner_status_due",
        "tasks",
        ["owner_id", "status", "due_at"],
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
