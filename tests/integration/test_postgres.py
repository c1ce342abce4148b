"""Behaviour that only a real PostgreSQL shows: SKIP LOCKED claims, the search index, the
configuration trigger, migrations both ways."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from taskflow.adapters import db
from taskflow.adapters.repository import OutboxRepository, ReminderRepository, TaskRepository
from taskflow.domain import model
from taskflow.events import Envelope
from tests.conftest import pg_engine

pytestmark = pytest.mark.postgres
NOW = datetime.now(UTC)


@pytest.fixture
def engine() -> Any:
    return pg_engine()


def _envelope(i: int) -> Envelope:
    return Envelope(
        id=f"00000000-0000-0000-0000-{i:012d}",
        type="t",
        source="/s",
        subject="x",
        time="",
        topic="task-events",
        partition_key=f"k{i}",
        data={},
    )


def test_two_relays_claim_disjoint_outbox_rows(engine: Any) -> None:
    with engine.begin() as conn:
        repo = OutboxRepository(conn)
        for i in range(10):
            repo.add_many([_envelope(i)], NOW)
    with engine.connect() as a, engine.connect() as b:
        ta, tb = a.begin(), b.begin()
        first = OutboxRepository(a).claim_pending(6)
        second = OutboxRepository(b).claim_pending(6)
        assert len(first) == 6 and len(second) == 4
        assert not {r.event_id for r in first} & {r.event_id for r in second}
        ta.rollback()
        tb.rollback()


def test_two_dispatchers_claim_disjoint_reminders(engine: Any) -> None:
    with engine.begin() as conn:
        tasks, reminders = TaskRepository(conn), ReminderRepository(conn)
        for _ in range(8):
            task = model.Task.create(
                "alice",
                "alice",
                title="t",
                due_at=NOW + timedelta(days=1),
                reminders=[model.Reminder(at=NOW + timedelta(seconds=1))],
            )
            tasks.add(task)
            reminders.replace_pending(task, task.reminder_schedule(NOW, set), NOW)
    later = NOW + timedelta(seconds=5)
    with engine.connect() as a, engine.connect() as b:
        ta, tb = a.begin(), b.begin()
        first = ReminderRepository(a).claim_due(later, 5)
        second = ReminderRepository(b).claim_due(later, 5)
        assert len(first) == 5 and len(second) == 3
        assert not {r.id for r in first} & {r.id for r in second}
        ta.rollback()
        tb.rollback()


def test_search_uses_the_gin_index(engine: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = (
            conn.execute(
                text(
                    "EXPLAIN SELECT id FROM tasks WHERE owner_id = 'a' "
                    "AND search_vector @@ to_tsquery('simple', 'milk:*')"
                )
            )
            .scalars()
            .all()
        )
    assert any("ix_tasks_search" in line for line in plan), plan


def _plan_of_list(engine: Any, rows_sql: str, owner: str, query: Any, which: int) -> list[str]:
    """EXPLAIN of the statement number ``which`` that ``TaskRepository.list`` sends for ``query``,
    over the tasks ``rows_sql`` inserts (rolled back)."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []
    with engine.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO tasks (id, owner_id, title, description, status, priority, tags, timezone,"
                " reminders, occurrence, created_at, updated_at, version) " + rows_sql
            )
        )
        conn.execute(text("ANALYZE tasks"))
        listen = lambda *a: sent.append((a[2], a[3]))  # noqa: E731
        event.listen(conn, "before_cursor_execute", listen)
        TaskRepository(conn).list(owner, query, NOW)
        event.remove(conn, "before_cursor_execute", listen)
        statement, params = sent[which]
        plan = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars().all()
        conn.rollback()
    return list(plan)


def test_all_of_tags_use_the_tag_keys_index(engine: Any) -> None:
    """The statement ``TaskRepository.list`` sends for all of several tags is one the GIN index of
    tag keys (migration 0006) answers: its expression must stay the index's."""
    from taskflow.domain.query import TaskQuery

    # 3 000 tasks of the user, 1 in 100 with both tags
    rows = (
        "SELECT gen_random_uuid()::text, 'a', 't' || i, '', 'open', 0,"
        ' CASE WHEN i % 100 = 0 THEN \'["work", "q4"]\' ELSE \'["work"]\' END::json,'
        " 'UTC', '[]', 0, now(), now(), 1 FROM generate_series(1, 3000) AS i"
    )
    plan = _plan_of_list(engine, rows, "a", TaskQuery(tags=("work", "q4")), -1)
    assert any("ix_tasks_tag_keys" in line for line in plan), plan


def test_searches_of_several_words_use_the_prefix_keys_index(engine: Any) -> None:
    """Several words: the statement is one the GIN index of word-prefix keys (migration 0007)
    answers, and not the search_vector index's bitmaps of every user's matches."""
    from taskflow.domain.query import TaskQuery

    rows = (
        "SELECT gen_random_uuid()::text, CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END,"
        " CASE WHEN i % 2 = 0 THEN 'milk ' ELSE 'bread ' END || 'item' || i, '', 'open', 0, '[]',"
        " 'UTC', '[]', 0, now(), now(), 1 FROM generate_series(1, 6000) AS i"
    )
    plan = _plan_of_list(engine, rows, "a", TaskQuery(q="milk bread"), 0)
    assert any("ix_tasks_search_keys" in line for line in plan), plan
    assert not any("ix_tasks_search " in line for line in plan), plan


def test_configuration_changes_are_announced_on_the_channel(engine: Any) -> None:
    """configuration.postgresql subscribes with LISTEN; our trigger must NOTIFY on every change."""
    import pg8000.native

    u = engine.url
    listener = pg8000.native.Connection(
        u.username, host=u.host, port=u.port or 5432, database=u.database, password=u.password
    )
    listener.run("LISTEN taskflow_config_changed")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO taskflow_config (key, value, version) VALUES ('k', 'v', '1')"))
    listener.run("SELECT 1")
    notes = listener.notifications
    listener.close()
    assert notes, "no NOTIFY"
    payload = json.loads(notes[0][2])
    assert payload["action"] == "INSERT" and payload["data"]["key"] == "k"


def test_migrations_downgrade_and_upgrade_again(tmp_path: Any) -> None:
    from alembic import command

    cfg = db.alembic_config()
    engine = pg_engine()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('tasks')")).scalar() is None
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('tasks')")).scalar() == "tasks"


def test_concurrent_completes_emit_one_event(engine: Any) -> None:
    from taskflow.adapters.sql_unit_of_work import SqlUnitOfWork
    from taskflow.bootstrap import system_clock
    from taskflow.service_layer import tasks

    task = tasks.create_task(SqlUnitOfWork(engine), system_clock, "alice", {"title": "race"})
    errors: list[BaseException] = []

    def complete() -> None:
        try:
            tasks.complete_task(SqlUnitOfWork(engine), system_clock, "alice", task.id, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=complete) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM outbox WHERE event LIKE '%task.completed%'")).scalar()
    assert n == 1


def test_migrate_waits_for_a_database_that_is_still_starting() -> None:
    """`taskflow migrate --wait N` (the chart's migration Job): a PostgreSQL that is not listening yet is
    retried until N seconds have passed, then the command fails with the driver's error."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql+pg8000://nobody:x@127.0.0.1:{port}/none"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "taskflow.cli", "migrate", "--wait", "2"],
        env={"TASKFLOW_DATABASE_URL": url, "TASKFLOW_MODE": "dapr", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert time.monotonic() - t0 >= 2
    assert "not reachable yet" in res.stderr and "retrying" in res.stderr
    assert "x@" not in res.stderr + res.stdout  # no password in its output


def test_new_connections_use_tls_without_reloading_the_ca_store(engine: Any, monkeypatch: Any) -> None:
    """Each new pooled connection used to cost 45 ms of CPU, holding the interpreter lock, because
    pg8000 built a TLS context per connection (loading the system's CA certificates only to switch
    verification off). Connections still negotiate TLS when the server offers it, as before."""
    import ssl

    from tests.conftest import PG_URL

    built: list[int] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(1) or real(*a, **k))
    fresh = db.build_engine(str(PG_URL))
    try:
        conns = [fresh.connect() for _ in range(3)]  # three new connections, none pooled yet
        on_tls = [c.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar() for c in conns]
        for c in conns:
            c.close()
    finally:
        fresh.dispose()
    with engine.connect() as conn:
        server_offers_tls = bool(conn.execute(text("SELECT current_setting('ssl') = 'on'")).scalar())
    assert on_tls == [server_offers_tls] * 3
    assert built == []  # no per-connection context (db.unverified_tls is built once per process)
