"""Full-text search, the same behaviour on PostgreSQL (tsvector) and SQLite (FTS5).

Case-insensitive, every word must match, each word matches as a prefix, relevance order.
Raw SQL fragments are used here because the ORM has no full-text vocabulary.

Relevance is ranked over a bounded window of candidates (``WINDOW``: the newest matches, see
``TaskRepository.list``), so a word that matches tens of thousands of tasks costs a ranking of
``WINDOW`` rows, not of every match.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Double,
    FromClause,
    Text,
    and_,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)

#: How many matches (the newest first) one relevance ranking covers; a search with more matches
#: is ranked window by window (newest window first). Larger than the largest page (200).
WINDOW = 500
_TEXTS = ARRAY(Text())


def _tsquery(words: list[str]) -> Any:
    return func.to_tsquery(literal_column("'simple'"), " & ".join(f"{w}:*" for w in words))


def _fts_query(words: list[str]) -> str:
    # FTS5: each word quoted (no operators leak in) and starred for prefix matching.
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def match(dialect: str, words: list[str], owner_id: str) -> ColumnElement[bool]:
    """A WHERE clause on ``tasks`` that keeps the tasks of ``owner_id`` matching every word (the
    caller filters on the owner too)."""
    if dialect == "postgresql":
        vector: ColumnElement[Any] = literal_column("tasks.search_vector")
        if len(words) < 2:
            return vector.op("@@")(_tsquery(words))
        # Several words: GIN expands each prefix term of the search_vector index into a bitmap of
        # every task of every user that has a matching word, then ANDs them (two common words that
        # never go together: 40-110 ms for no result). The index of the owner's word prefixes
        # (migration 0006) makes each one an exact key: GIN intersects the owner's posting lists
        # and the tsquery, unchanged, checks the rows found. ts_match_vq is @@ written so that the
        # planner cannot AND the search_vector index back in. One word stays on @@: an ordered
        # scan of the user's newest tasks answers a common word sooner than any bitmap.
        found = func.taskflow_search_keys(literal_column("tasks.owner_id"), vector, type_=_TEXTS)
        wanted = func.taskflow_search_query_keys(owner_id, " ".join(words), type_=_TEXTS)
        return and_(found.op("@>")(wanted), func.ts_match_vq(vector, _tsquery(words)))
    fts = table("tasks_fts", column("rowid"))
    matching = select(fts.c.rowid).where(text("tasks_fts MATCH :fts_query").bindparams(fts_query=_fts_query(words)))
    return literal_column("tasks.rowid").in_(matching)


def row_key(dialect: str) -> ColumnElement[Any]:
    """What ``rank`` needs of a task row: its search vector (PostgreSQL) or rowid (SQLite), labelled ``fts_key``."""
    name = "tasks.search_vector" if dialect == "postgresql" else "tasks.rowid"
    return literal_column(name).label("fts_key")


def rank(dialect: str, words: list[str], rows: FromClause | None = None) -> ColumnElement[Any]:
    """Relevance (higher is better) of the task rows of ``rows`` (a subquery with ``row_key``'s
    ``fts_key`` column), or of ``tasks`` itself when ``rows`` is None."""
    if dialect == "postgresql":
        vector: ColumnElement[Any] = literal_column("tasks.search_vector") if rows is None else rows.c.fts_key
        # as double precision: a cursor carries the rank as a JSON number, and a real (float4)
        # compared with it never equals it again (0.4 is not the float4 0.4), so ties were lost
        return cast(func.ts_rank_cd(vector, _tsquery(words)), Double())
    rowid: ColumnElement[Any] = literal_column("tasks.rowid") if rows is None else rows.c.fts_key
    fts = table("tasks_fts", column("rowid"))
    return (
        select(-func.bm25(literal_column("tasks_fts"), 10.0, 1.0))
        .select_from(fts)
        .where(text("tasks_fts MATCH :fts_rank_query").bindparams(fts_rank_query=_fts_query(words)))
        .where(fts.c.rowid == rowid)
        .scalar_subquery()
    )


def match_and_rank(dialect: str, words: list[str], owner_id: str) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """A WHERE clause that keeps matching tasks, and a relevance expression (higher is better)."""
    return match(dialect, words, owner_id), rank(dialect, words)


__all__ = ["WINDOW", "match", "match_and_rank", "rank", "row_key"]
