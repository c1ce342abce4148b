#!/usr/bin/env python3
"""reminder-dispatch on PostgreSQL with 1 000 000 tasks: claim-and-dispatch throughput, and the plan.

    nox -s bench -- bench/reminder_bench.py [--tasks 1000000] [--due 100000] [--batch 1000]

Every task has one pending reminder; ``--due`` of them are due now, the rest tomorrow. The dispatcher
runs the same handler as the cron route (claim with SKIP LOCKED, write reminder.due to the outbox,
mark fired) in batches until nothing is due. Publishing is not included (see outbox_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from common import fresh_database, run_sql, seed_tasks_sql


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    url = fresh_database("taskflow_bench_reminders")
    os.environ.update(TASKFLOW_DATABASE_URL=url)
    from taskflow.adapters import db
    from taskflow.adapters.sql_unit_of_work import SqlUnitOfWork
    from taskflow.service_layer.reminders import dispatch_reminders

    engine = db.build_engine(url)
    db.migrate(engine)
    t0 = time.perf_counter()
    users = 100
    per_user = args.tasks // users
    statements: list[str] = []
    for u in range(users):
        statements += [
            s
            for s in seed_tasks_sql(
                f"user-{u}", per_user, with_reminders=True, reminder_due_fraction=args.due / args.tasks
            )
            if s != "ANALYZE"
        ]
    run_sql(engine, statements)
    print(f"seeded {args.tasks} tasks with reminders in {time.perf_counter() - t0:.1f} s")

    with engine.connect() as conn:
        plan = (
            conn.execute(
                text(
                    "EXPLAIN (ANALYZE, BUFFERS) SELECT reminders.id FROM reminders "
                    "JOIN tasks ON tasks.id = reminders.task_id "
                    "WHERE reminders.status = 'pending' AND reminders.fire_at <= now() "
                    "ORDER BY reminders.fire_at LIMIT 1000 FOR UPDATE OF reminders SKIP LOCKED"
                )
            )
            .scalars()
            .all()
        )
        conn.rollback()
    print("\n".join(plan))

    now = datetime.now(UTC)
    fired = 0
    batches = 0
    t0 = time.perf_counter()
    while True:
        uow = SqlUnitOfWork(engine, "/taskflow/reminder-dispatch")
        result = dispatch_reminders(uow, lambda: now, timedelta(days=1), timedelta(minutes=5), batch=args.batch)
        if result.fired + result.missed == 0:
            break
        fired += result.fired
        batches += 1
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tasks": args.tasks,
                "due": args.due,
                "fired": fired,
                "batches": batches,
                "seconds": round(wall, 2),
                "reminders_per_s": round(fired / wall, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
