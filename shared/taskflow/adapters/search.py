"""Full-text search, the same behaviour on PostgreSQL (tsvector) and SQLite (FTS5).

Case-insensitive, every word must match, each word matches as a prefix, relevance order.
Raw SQL fragments are used here because the ORM has no full-text vocabulary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, column, func, literal_column, select, table, text


def match_and_rank(dialect: str, words: list[str]) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """A WHERE clause that keeps matching tasks, and a relevance expression (higher is better)."""
    if dialect == "postgresql":
        tsquery = " & ".join(f"{w}:*" for w in words)
        q = func.to_tsquery(literal_column("'simple'"), tsquery)
        vector: ColumnElement[Any] = literal_column("tasks.search_vector")
        return vector.op("@@")(q), func.ts_rank_cd(vector, q)
    # FTS5: each word quoted (no operators leak in) and starred for prefix matching.
    fts_query = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
    fts = table("tasks_fts", column("rowid"))
    matching = select(fts.c.rowid).where(text("tasks_fts MATCH :fts_query").bindparams(fts_query=fts_query))
    rank = (
        select(-func.bm25(literal_column("tasks_fts"), 10.0, 1.0))
        .select_from(fts)
        .where(text("tasks_fts MATCH :fts_rank_query").bindparams(fts_rank_query=fts_query))
        .where(fts.c.rowid == literal_column("tasks.rowid"))
        .scalar_subquery()
    )
    return literal_column("tasks.rowid").in_(matching), rank


__all__ = ["match_and_rank"]
