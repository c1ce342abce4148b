"""Fixtures: every API and event test runs on SQLite and, when TASKFLOW_TEST_PG_URL is set
(`.ci/run` sets it after starting PostgreSQL), on a real PostgreSQL too.

Tests build the composition root themselves (``taskflow.bootstrap.Root``) with the clock they
control, instead of patching module globals."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from taskflow import config
from taskflow.adapters import db
from taskflow.adapters.tables import metadata
from taskflow.bootstrap import Root

PG_URL = os.environ.get("TASKFLOW_TEST_PG_URL")
# The telemetry tests read spans through an in-memory exporter added to the process's tracer
# provider. Without an OTLP endpoint a process records only the spans a caller asks to sample
# (tests/integration/test_trace_sampling.py checks that default); here, every span.
os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_always_on")
TEST_SECRET = secrets.token_hex(32)

# Every log record of the whole suite, scanned for secrets when the session ends.
_SUITE_LOG = io.StringIO()
logging.getLogger().addHandler(logging.StreamHandler(_SUITE_LOG))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No log line of the suite holds the JWT secret, the webhook signing key or a bearer token."""
    text = _SUITE_LOG.getvalue()
    signing_key = hashlib.sha256(b"taskflow-webhook:" + TEST_SECRET.encode()).hexdigest()
    leaks = [
        name
        for name, secret in (("the JWT secret", TEST_SECRET), ("the webhook signing key", signing_key))
        if secret in text
    ]
    if re.search(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.", text):
        leaks.append("a bearer token")
    if leaks:
        print(f"\nSECRET IN THE LOGS: {', '.join(leaks)} appeared in a log line of this test run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_pg_engine: Engine | None = None


def pg_engine() -> Engine:
    """The test PostgreSQL, migrated once per session and emptied for each test."""
    global _pg_engine
    if not PG_URL:
        pytest.skip("TASKFLOW_TEST_PG_URL is not set (.ci/run sets it after starting PostgreSQL)")
    if _pg_engine is None:
        _pg_engine = db.build_engine(PG_URL)
        db.migrate(_pg_engine)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with _pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))
    return _pg_engine


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied for each test (migrating every test's file costs time)."""
    path = tmp_path_factory.mktemp("template") / "taskflow.db"
    engine = db.build_engine(f"sqlite:///{path}")
    db.migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(params=_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        import shutil

        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "taskflow.db")
        return f"sqlite:///{tmp_path / 'taskflow.db'}"
    pg_engine()
    assert PG_URL is not None
    return PG_URL


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path) -> str:
    for name in list(os.environ):
        if name.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TASKFLOW_EXPORTS_DIR", str(tmp_path / "exports"))  # embedded mode's object store
    monkeypatch.setenv("TASKFLOW_JWT_SECRET", TEST_SECRET)
    return db_url


class Clock:
    """The tests' clock: real time plus an offset the test moves forward (no sleeping)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_app(env: str, clock: Clock) -> Iterator[Callable[..., Any]]:
    """Start embedded mode (all functions, in-process bus, no background timers) on a root built
    from the environment as it is now; ``settings`` overrides single settings. The database is
    already migrated, so the root gets its engine (one per test file, or the session's PostgreSQL
    engine) instead of building and migrating one."""
    from taskflow.embedded import Embedded

    engine = pg_engine_now() if env == PG_URL else db.build_engine(env)
    started: list[Embedded] = []

    def start(**settings: Any) -> Embedded:
        for emb in started:
            emb.stop()
        started.clear()
        root = Root(_replace(config.load(), settings), clock=clock, engine=engine)
        emb = Embedded(root=root).start(timers=False)
        started.append(emb)
        return emb

    yield start
    for emb in started:
        emb.stop()
    if env != PG_URL:
        engine.dispose()


def pg_engine_now() -> Engine:
    """The session's PostgreSQL engine as the ``db_url`` fixture left it (migrated and emptied)."""
    assert _pg_engine is not None
    return _pg_engine


def _replace(settings: config.Settings, changes: dict[str, Any]) -> config.Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


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


@contextmanager
def serve_jwks(public_key: Any, kid: str = "k1") -> Iterator[str]:
    """A JWKS endpoint (a real HTTP server on loopback) publishing ``public_key`` (RS256); its URL."""
    import jwt

    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
