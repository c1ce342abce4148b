"""The tables are defined once (``adapters/tables.py``); the migrations must build exactly them.

Alembic's autogenerate compares a freshly migrated database with the table definitions: any
difference (a column, type, nullability, index or unique constraint in one and not the other)
fails, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from taskflow.adapters import db
from taskflow.adapters.tables import metadata
from tests.conftest import pg_engine

#: Full-text search objects and the GIN indexes of tag and word-prefix keys (on SQL functions of the row,
#: PostgreSQL only) exist only in the migrations (the ORM has no words for them).
SEARCH_ONLY = {"tasks_fts", "search_vector", "ix_tasks_search", "ix_tasks_search_keys", "ix_tasks_tag_keys"}


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (name in SEARCH_ONLY or (name or "").startswith("tasks_fts") or name == "alembic_version")


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _include, "compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_build_the_tables_on_sqlite(tmp_path: Path) -> None:
    engine = db.build_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    db.migrate(engine)
    assert _diff(engine) == []


@pytest.mark.postgres
def test_migrations_build_the_tables_on_postgresql() -> None:
    assert _diff(pg_engine()) == []


def test_the_check_sees_a_difference(tmp_path: Path) -> None:
    """A column the migrations do not create is reported."""
    from sqlalchemy import Column, Integer, MetaData, Table

    engine = db.build_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    db.migrate(engine)
    extra = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(extra)
    Table("outbox", extra, Column("priority", Integer), extend_existing=True)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _include})
        assert any(d[0] == "add_column" and d[3].name == "priority" for d in compare_metadata(context, extra))
