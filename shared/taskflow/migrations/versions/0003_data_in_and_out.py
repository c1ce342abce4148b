"""Data in and out: the import UID map, asynchronous exports, the audit archive's manifest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from taskflow.adapters.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_imports",
        sa.Column("owner_id", sa.String(255), primary_key=True),
        sa.Column("uid", sa.String(255), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "exports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_exports_owner_created", "exports", ["owner_id", "created_at"])
    op.create_index("ix_exports_expires", "exports", ["expires_at"])
    op.create_table(
        "audit_archive",
        sa.Column("object_key", sa.String(512), primary_key=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("oldest", UTCDateTime, nullable=False),
        sa.Column("newest", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audit_archive_tasks",
        sa.Column("object_key", sa.String(512), primary_key=True),
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("newest", UTCDateTime, nullable=False),
    )
    op.create_index("ix_audit_archive_tasks_task", "audit_archive_tasks", ["task_id"])
    op.create_index("ix_audit_archive_tasks_owner", "audit_archive_tasks", ["owner_id"])


def downgrade() -> None:
    op.drop_table("audit_archive_tasks")
    op.drop_table("audit_archive")
    op.drop_table("exports")
    op.drop_table("task_imports")
