"""The list benchmark's data: 1 000 000 tasks, 100 000 of them for one user (``bench``), in a
PostgreSQL database of its own, created once and reused (``--reuse``), built server-side with
generate_series in about two minutes.

    python bench/dataset.py [--database taskflow_perf] [--drop]

Titles are three to five words from a small vocabulary, so a common word matches many tasks
(``milk``: about 13 % of them, 13 000 of the user's 100 000); 80 % are open; a third have no due
date; zero to three tags out of eight. Each description ends with one of 500 reference words
(``ref0`` .. ``ref499``): real text has far more than 100 distinct words, and with fewer
PostgreSQL has no statistics for prefix searches (it assumes 2 % of rows match ``milk:*``, not 16 %).
"""

from __future__ import annotations

import argparse
import subprocess
import time

from sqlalchemy import create_engine, text

import common

WORDS = [
    "report",
    "call",
    "review",
    "deploy",
    "invoice",
    "email",
    "plan",
    "budget",
    "meeting",
    "draft",
    "fix",
    "test",
    "write",
    "read",
    "book",
    "pay",
    "rent",
    "clean",
    "garden",
    "car",
    "dentist",
    "doctor",
    "school",
    "gym",
    "run",
    "walk",
    "cook",
    "shop",
    "order",
    "ship",
    "print",
    "sign",
    "file",
    "tax",
    "bank",
    "visa",
    "passport",
    "flight",
    "hotel",
    "train",
    "ticket",
    "gift",
    "party",
    "birthday",
    "wedding",
    "laundry",
    "dishes",
    "vacuum",
    "paint",
    "repair",
    "plumber",
    "electrician",
    "insurance",
    "renew",
    "cancel",
    "update",
    "backup",
    "server",
    "release",
    "milk",
    "bread",
    "eggs",
    "cheese",
    "coffee",
]
TAGS = ["work", "home", "q4", "errand", "family", "health", "money", "someday"]
USER = "bench"


def url_for(database: str) -> str:
    return common.bench_url(database)


def _psql(script: str, database: str = "postgres") -> str:
    out = subprocess.run(
        ["su", "postgres", "-c", f"psql -X -q -At -v ON_ERROR_STOP=1 -d {database}"],
        input=script,
        text=True,
        capture_output=True,
    )
    if out.returncode:
        raise SystemExit(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def exists(database: str) -> bool:
    return _psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'") == "1"


def drop(database: str) -> None:
    _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def create(database: str, total: int = 1_000_000, mine: int = 100_000) -> str:
    """Create ``database`` with ``total`` tasks, ``mine`` of them for user ``bench``; its URL."""
    from taskflow.adapters import db

    url = common.fresh_database(database)
    engine = db.build_engine(url)
    db.migrate(engine)
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    tags = "ARRAY[" + ",".join(f"'{t}'" for t in TAGS) + "]"
    n_words = len(WORDS)
    t0 = time.perf_counter()
    chunk = 50_000
    for first in range(1, total + 1, chunk):
        last = min(total, first + chunk - 1)
        for attempt in range(30):  # the shared server may restart meanwhile: retry the chunk
            try:
                with engine.begin() as conn:
                    conn.execute(text(_insert_sql(first, last, mine, words, tags, n_words)))
                break
            except Exception as exc:
                print(f"chunk {first}..{last} failed ({type(exc).__name__}); retrying", flush=True)
                engine.dispose()
                time.sleep(min(2 + attempt, 10))
        else:
            raise SystemExit("PostgreSQL kept failing; giving up")
    _psql("VACUUM ANALYZE", database)
    print(f"dataset {database}: {total} tasks ({mine} for '{USER}') in {time.perf_counter() - t0:.0f} s")
    engine.dispose()
    return url


def _insert_sql(first: int, last: int, mine: int, words: str, tags: str, n_words: int) -> str:
    """Tasks ``first..last`` of the generated series and their tags, in one statement."""
    return f"""
        WITH ins AS (
          INSERT INTO tasks (id, owner_id, title, description, status, priority, tags, due_at, timezone,
                             recurrence, reminders, series_id, series_start, occurrence, completed_at,
                             created_at, updated_at, deleted_at, version)
          SELECT gen_random_uuid()::text,
                 CASE WHEN g <= {mine} THEN '{USER}' ELSE 'user' || (g % 900) END,
                 initcap(w[1]) || ' ' || CASE WHEN g % 8 = 0 THEN 'milk' ELSE w[2] END || ' ' || w[3]
                   || CASE WHEN g % 2 = 0 THEN ' ' || w[4] ELSE '' END
                   || CASE WHEN g % 3 = 0 THEN ' ' || w[5] ELSE '' END,
                 CASE WHEN g % 4 = 0 THEN 'Notes: ' || w[5] || ' ' || w[1] || ' before friday ' ELSE '' END
                   || 'ref' || (g % 500),
                 CASE WHEN g % 5 = 0 THEN 'completed' ELSE 'open' END,
                 (g * 7) % 5,
                 t,
                 CASE WHEN g % 3 = 0 THEN NULL
                      ELSE now() - interval '30 days' + ((g::bigint * 37) % 2000) * interval '1 hour' END,
                 'UTC', NULL, '[]'::json, NULL, NULL, 1,
                 CASE WHEN g % 5 = 0 THEN now() - (g % 1000) * interval '1 minute' END,
                 now() - (g * interval '1 second'), now() - (g * interval '1 second') + interval '1 minute',
                 NULL, 1
          FROM (
            SELECT g,
                   ARRAY(SELECT ({words})[1 + ((g::bigint * k * 2654435761) % {n_words})]
                         FROM generate_series(1, 5) AS k) AS w,
                   to_json(ARRAY(SELECT DISTINCT ({tags})[1 + ((g / 7 + k * 3) % 8)]
                                 FROM generate_series(1, g % 4) AS k ORDER BY 1)) AS t
            FROM generate_series({first}, {last}) AS g
          ) AS s
          RETURNING id, tags, owner_id
        )
        INSERT INTO task_tags (task_id, tag, owner_id)
        SELECT id, json_array_elements_text(tags), owner_id FROM ins
    """


def ensure(database: str, total: int = 1_000_000, mine: int = 100_000) -> str:
    """The dataset's URL, created only when the database does not exist yet."""
    if exists(database):
        url = url_for(database)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM tasks WHERE owner_id = :u"), {"u": USER}).scalar()
                # built before the reference words (2026-12-03): rebuild
                current = conn.execute(text("SELECT EXISTS (SELECT FROM tasks WHERE description LIKE 'ref%')")).scalar()
        finally:
            engine.dispose()
        if n and n >= mine and current:
            return url
    return create(database, total, mine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--database", default="taskflow_perf")
    ap.add_argument("--total", type=int, default=1_000_000)
    ap.add_argument("--mine", type=int, default=100_000)
    ap.add_argument("--drop", action="store_true", help="drop the database and exit")
    args = ap.parse_args()
    if args.drop:
        drop(args.database)
        return
    print(ensure(args.database, args.total, args.mine))


if __name__ == "__main__":
    main()
