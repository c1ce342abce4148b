"""Shared pieces of the benchmarks: a fresh PostgreSQL database, percentiles, bulk seeding."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fresh_database(name: str) -> str:
    """Create (or recreate) database ``name`` owned by a bench role; return its SQLAlchemy URL.

    Uses the local cluster as root via ``su postgres`` (the machine's PostgreSQL 15).
    """
    password = os.environ.get("TASKFLOW_BENCH_PG_PASSWORD", "taskflow_bench")
    script = f"""
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'taskflow_bench') THEN
        CREATE ROLE taskflow_bench LOGIN;
      END IF;
    END $$;
    ALTER ROLE taskflow_bench PASSWORD '{password}';
    DROP DATABASE IF EXISTS {name} WITH (FORCE);
    CREATE DATABASE {name} OWNER taskflow_bench;
    """
    subprocess.run(["su", "postgres", "-c", "psql -q -v ON_ERROR_STOP=1"], input=script, text=True, check=True)
    return bench_url(name)


def bench_url(name: str) -> str:
    """The SQLAlchemy URL of bench database ``name`` (owned by the bench role)."""
    password = os.environ.get("TASKFLOW_BENCH_PG_PASSWORD", "taskflow_bench")
    return f"postgresql+pg8000://taskflow_bench:{password}@127.0.0.1:5432/{name}"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p99": round(q[98], 2), "max": round(max(samples_ms), 2), "n": len(samples_ms)}


def seed_tasks_sql(owner: str, n: int, with_reminders: bool = False, reminder_due_fraction: float = 0.0) -> list[str]:
    """SQL that inserts ``n`` tasks for ``owner`` with generate_series (fast, server-side)."""
    stmts = [
        f"""
        INSERT INTO tasks (id, owner_id, title, description, status, priority, tags, due_at, timezone,
                           recurrence, reminders, series_id, series_start, occurrence, completed_at,
                           created_at, updated_at, deleted_at, version)
        SELECT gen_random_uuid()::text, '{owner}',
               'Task ' || g || ' ' || (ARRAY['report','milk','call','review','deploy','invoice'])[1 + g % 6],
               'Generated description number ' || g,
               CASE WHEN g % 5 = 0 THEN 'completed' ELSE 'open' END,
               g % 5,
               to_json(ARRAY[(ARRAY['work','home','q4','errand'])[1 + g % 4]]),
               CASE WHEN g % 3 = 0 THEN NULL ELSE now() + (g % 1000) * interval '1 hour' END,
               'UTC', NULL, '[]'::json, NULL, NULL, 1, NULL,
               now() - (g * interval '1 second'), now() - (g * interval '1 second'), NULL, 1
        FROM generate_series(1, {n}) AS g
        """,
        f"""INSERT INTO task_tags (task_id, tag, owner_id)
            SELECT id, (tags->>0), owner_id FROM tasks WHERE owner_id = '{owner}'""",
    ]
    if with_reminders:
        due = int(n * reminder_due_fraction)
        stmts.append(
            f"""
            INSERT INTO reminders (id, task_id, owner_id, slot, fire_at, status, late, fired_at, created_at)
            SELECT gen_random_uuid()::text, id, owner_id, 0,
                   CASE WHEN row_number() OVER () <= {due} THEN now() - interval '1 minute'
                        ELSE now() + interval '1 day' + (row_number() OVER ()) * interval '1 second' END,
                   'pending', false, NULL, now()
            FROM tasks WHERE owner_id = '{owner}'
            """
        )
    stmts.append("ANALYZE")
    return stmts


def run_sql(engine: object, statements: list[str]) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        for s in statements:
            if s.strip() == "ANALYZE":
                continue
            conn.execute(text(s))
    database = engine.url.database  # type: ignore[attr-defined]
    subprocess.run(["su", "postgres", "-c", f"psql -q -d {database} -c ANALYZE"], check=True)
