"""Searches of several words from a GIN index of each task's word prefixes, qualified by its owner
(PostgreSQL). A prefix term of the search_vector index (``milk:*``) is expanded into a bitmap of
every matching task of every user before the words are ANDed; here every prefix of each word up to
``_PREFIX`` characters is an exact key, ``prefix<US>owner``, so GIN intersects the owner's posting
lists and the tsquery checks only the tasks that have every word's prefix. A word longer than
``_PREFIX`` is looked up by its first ``_PREFIX`` characters: the keys only narrow, the tsquery
decides, so results and relevance are unchanged.

An expression of columns every write already sets (search_vector is generated): nothing more to
write. SQLite's FTS5 table answers prefix queries from its own index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PREFIX = 6  # longer prefixes: more keys per task (a larger index) for rarely sharper lookups

# Both sides split words the same way: the query's keys come from to_tsvector('simple') of its
# words, the parser and dictionary that built the tasks' vectors and that to_tsquery uses. No
# words (nothing the parser keeps) gives NULL, which matches nothing, as the empty tsquery does.
_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION taskflow_search_keys(owner text, v tsvector) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT coalesce(array_agg(DISTINCT left(l, n) || chr(31) || owner), '{{}}')
   FROM unnest(tsvector_to_array(v)) AS l, generate_series(1, least(length(l), {_PREFIX})) AS n $$;
CREATE OR REPLACE FUNCTION taskflow_search_query_keys(owner text, words text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT array_agg(DISTINCT left(l, {_PREFIX}) || chr(31) || owner)
   FROM unnest(tsvector_to_array(to_tsvector('simple', words))) AS l $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTIONS)
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")  # the build sorts ~20 keys per task
    op.execute(
        "CREATE INDEX ix_tasks_search_keys ON tasks USING GIN (taskflow_search_keys(owner_id, search_vector)) "
        "WHERE deleted_at IS NULL"
    )
    op.execute("ANALYZE tasks")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_tasks_search_keys")
    op.execute("DROP FUNCTION IF EXISTS taskflow_search_query_keys(text, text)")
    op.execute("DROP FUNCTION IF EXISTS taskflow_search_keys(text, tsvector)")
