"""Fixtures: every API and event test runs on SQLite and, when TASKFLOW_TEST_PG_URL is set
(`.ci/run` sets it after starting PostgreSQL), on a real PostgreSQL too."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from taskflow import config, runtime
from taskflow.adapters import db
from taskflow.adapters.tables import metadata

PG_URL = os.environ.get("TASKFLOW_TEST_PG_URL")
TEST_SECRET = secrets.token_hex(32)

_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_pg_migrated = False


def _pg_url() -> str:
    global _pg_migrated
    if not PG_URL:
        pytest.skip("TASKFLOW_TEST_PG_URL is not set (.ci/run sets it after starting PostgreSQL)")
    if not _pg_migrated:
        db.migrate(PG_URL)
        _pg_migrated = True
    engine = db.engine_for(PG_URL)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))
    return PG_URL


@pytest.fixture(params=_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'taskflow.db'}"
    return _pg_url()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    for name in list(os.environ):
        if name.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TASKFLOW_JWT_SECRET", TEST_SECRET)
    config.reset()
    runtime.reset()
    yield db_url
    config.reset()
    runtime.reset()


@pytest.fixture
def app(env: str) -> Iterator[Any]:
    """Embedded mode (all functions, in-process bus) without background timers."""
    from taskflow.embedded import Embedded

    emb = Embedded().start(timers=False)
    try:
        yield emb
    finally:
        emb.stop()


@pytest.fixture
def client(app: Any) -> Any:
    return app.apps["tasks-api"].test_client()


def token(user: str, **claims: Any) -> str:
    import time

    import jwt

    now = int(time.time())
    body = {"sub": user, "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, TEST_SECRET, algorithm="HS256")


def auth(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}
