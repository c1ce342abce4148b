"""All-of tag filters from one GIN index (PostgreSQL): each live task's tags, qualified by its
owner, under a GIN index on an expression of the row (``taskflow_tag_keys(owner_id, tags)``).
``@>`` then intersects the tags' posting lists inside the index and a bitmap heap scan reads only
the tasks that have every tag; the join of ``task_tags`` entries it replaces read every entry of
every tag and fetched each common task by primary key (bench/README.md has both plans).

An expression of columns every write already sets: no new column, nothing more to write. SQLite
keeps the ``task_tags`` intersection (no GIN there).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# A key is tag, unit separator, owner: tags never contain control characters (normalize_tags),
# so the first separator ends the tag and no two (tag, owner) pairs share a key.
_FUNCTION = """
CREATE OR REPLACE FUNCTION taskflow_tag_keys(owner text, tags json) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT coalesce(array_agg(t || chr(31) || owner), '{}') FROM json_array_elements_text(tags) AS t $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(
        "CREATE INDEX ix_tasks_tag_keys ON tasks USING GIN (taskflow_tag_keys(owner_id, tags)) WHERE deleted_at IS NULL"
    )
    op.execute("ANALYZE tasks")  # the expression's statistics: without them @> is a guess


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_tasks_tag_keys")
    op.execute("DROP FUNCTION IF EXISTS taskflow_tag_keys(text, json)")
