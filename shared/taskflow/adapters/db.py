"""Engines and schema migration through Alembic (the composition root keeps one engine per process)."""

from __future__ import annotations

import functools
import logging
import os
import ssl
import threading
import time
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from taskflow.domain.limits import DATABASE_TIMEOUT

log = logging.getLogger(__name__)


def build_engine(url: str, *, timeout: float | None = DATABASE_TIMEOUT.max) -> Engine:
    """An engine for ``url``; SQLite gets WAL and write-serialising transactions. ``timeout`` bounds
    each connect and read of pg8000 (None: unbounded)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: no deadlock when a reader upgrades.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "pg8000":
        return _pg8000_engine(url, timeout)
    return create_engine(url, pool_size=pool_size(), max_overflow=20, pool_pre_ping=True, pool_recycle=300)


def pool_size() -> int:
    """Connections kept per process: one per server thread (``TASKFLOW_THREADS``) plus the
    background work's few, so a busy request never waits for a connection."""
    return int(os.environ.get("TASKFLOW_THREADS") or 8) + 4


def _pg8000_engine(url: str, timeout: float | None) -> Engine:
    """pg8000 through ``adapters.pgwire`` (one round trip per statement). No ping per checkout
    (a round trip each): a checked-out connection whose server end has closed is found by a
    zero-wait poll of its socket, and the pool replaces it; ``pool_recycle`` retires old ones."""
    import pg8000

    from taskflow.adapters import pgwire

    # A socket timeout bounds every connect and read: a stopped or unreachable server fails the
    # request (503/RETRY) instead of hanging it.
    engine = create_engine(
        url,
        pool_size=pool_size(),
        max_overflow=20,
        pool_pre_ping=False,
        pool_recycle=300,
        connect_args={"timeout": timeout},
    )
    # One multi-row INSERT for a batch of rows (tags, reminders, outbox, audit) instead of one
    # statement per row: what SQLAlchemy does for psycopg2, turned on for pg8000.
    engine.dialect.use_insertmanyvalues_wo_returning = True

    plaintext_only = threading.Event()  # the server refused TLS once: it will again

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # No parallel plans on the request path: on two cores their workers' start-up cost more than
        # the short index scans they split (a tag filter took 81 ms in parallel, 2 ms without).
        # Sent in the startup packet: no extra round trip.
        params = dict(cparams.pop("startup_params", None) or {})
        params.setdefault("options", "-c max_parallel_workers_per_gather=0")
        if "ssl_context" in cparams:  # the operator's own TLS settings (connect_args)
            return pgwire.Connection(*cargs, startup_params=params, **cparams)
        # pg8000's default, TLS when the server offers it (unverified) and plaintext otherwise, with
        # one context per process: pg8000 builds a new one per connection with
        # ssl.create_default_context(), which loads the system's CA certificates (45 ms of CPU,
        # holding the interpreter lock) only to switch verification off. In the local stack every
        # request that opened a pooled connection waited 220-260 ms in its first second for that.
        if not plaintext_only.is_set():
            try:
                return pgwire.Connection(*cargs, startup_params=params, ssl_context=unverified_tls(), **cparams)
            except pg8000.InterfaceError as refused:
                if str(refused) != "Server refuses SSL":
                    raise
                plaintext_only.set()
        return pgwire.Connection(*cargs, startup_params=params, ssl_context=False, **cparams)

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_conn, pgwire.Connection) and dbapi_conn.lost():
            raise exc.DisconnectionError("the server closed this pooled connection")  # the pool reconnects

    return engine


@functools.cache
def unverified_tls() -> ssl.SSLContext:
    """What pg8000 uses when given no ``ssl_context``: TLS without certificate checks (it does not
    verify the server by default either), built once instead of per connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("taskflow") / "migrations"))
    return cfg


def wait_until_reachable(engine: Engine, seconds: float) -> None:
    """Connect, retrying with backoff for up to ``seconds`` (a database that is still starting, as in a
    Helm install where PostgreSQL and the migration Job start together); the last error if it never answers."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            with engine.connect():
                return
        except DBAPIError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(delay, left)  # the last try lands on the deadline: the wait is the whole N seconds
            log.info("database not reachable yet (%s); retrying in %.1fs", type(exc.orig).__name__, pause)
            time.sleep(pause)
            delay = min(delay * 2, 5.0)


def migrate(engine: Engine) -> None:
    """Bring the schema behind ``engine`` to the newest Alembic revision."""
    from alembic import command

    cfg = alembic_config()
    own = None
    if engine.dialect.driver == "pg8000":
        # A migration may build an index over every task (0007: about two minutes at 1 000 000):
        # its own connection, without the request path's read timeout.
        own = engine = build_engine(engine.url.render_as_string(hide_password=False), timeout=None)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if own is not None:
            own.dispose()
