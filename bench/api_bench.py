#!/usr/bin/env python3
"""tasks-api on PostgreSQL with 100 000 tasks for one user: create and list latency and throughput.

    nox -s bench -- bench/api_bench.py [--tasks 100000] [--requests 2000] [--threads 4]

The API is served by the same WSGI app as `functions-framework --target tasks_api`, over real HTTP
on 127.0.0.1 (werkzeug threaded server), with no publisher (events stay in the outbox, as when the
sidecar is slow): this measures tasks-api and PostgreSQL, not the event path.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from werkzeug.serving import make_server

from common import ROOT, fresh_database, percentiles, run_sql, seed_tasks_sql


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    url = fresh_database("taskflow_bench_api")
    os.environ.update(
        TASKFLOW_DATABASE_URL=url,
        TASKFLOW_JWT_SECRET="bench-secret-" + "x" * 32,
        TASKFLOW_MODE="embedded",
        TASKFLOW_LOG_LEVEL="WARNING",
    )
    import logging

    import functions_framework

    from taskflow import config
    from taskflow.adapters import db
    from taskflow.api.auth import issue

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    engine = db.build_engine(url)
    db.migrate(engine)
    t0 = time.perf_counter()
    run_sql(engine, seed_tasks_sql("bench-user", args.tasks))
    print(f"seeded {args.tasks} tasks in {time.perf_counter() - t0:.1f} s")

    app = functions_framework.create_app(
        target="tasks_api",
        source=str(ROOT / "functions" / "tasks_api" / "main.py"),
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    headers = {"Authorization": f"Bearer {issue('bench-user', config.load(), os.environ['TASKFLOW_JWT_SECRET'])}"}

    def timed(fn: Any, n: int) -> dict[str, Any]:
        lat: list[float] = []
        lock = threading.Lock()
        local = threading.local()

        def one(i: int) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, headers=headers, timeout=30)
            s = time.perf_counter()
            fn(local.client, i)
            with lock:
                lat.append((time.perf_counter() - s) * 1000)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(one, range(n)))
        wall = time.perf_counter() - start
        return {**percentiles(lat), "req_per_s": round(n / wall, 1)}

    def create(c: httpx.Client, i: int) -> None:
        r = c.post(
            "/v1/tasks",
            json={
                "title": f"bench {i}",
                "tags": ["work"],
                "priority": "high",
                "due_at": "2031-01-01T10:00:00Z",
                "reminders": [{"offset": "-PT15M"}],
            },
        )
        assert r.status_code == 201, r.text

    cursor = httpx.get(base + "/v1/tasks?limit=50", headers=headers).json()["next_cursor"]
    queries = {
        "list default sort (first page)": "/v1/tasks?limit=50",
        "list page via cursor": f"/v1/tasks?limit=50&cursor={cursor}",
        "list tag + priority filter": "/v1/tasks?tags=work&priority=high,urgent&limit=50",
        "list overdue": "/v1/tasks?overdue=true&limit=50",
        "search q=milk rep (relevance)": "/v1/tasks?q=milk%20rep&limit=50",
        "list sort=-priority,title": "/v1/tasks?sort=-priority,title&limit=50",
    }
    results: dict[str, Any] = {"create": timed(create, args.requests)}
    for name, path in queries.items():

        def get(c: httpx.Client, i: int, path: str = path) -> None:
            r = c.get(path)
            assert r.status_code == 200, r.text

        results[name] = timed(get, max(200, args.requests // 4))
    server.shutdown()
    print(json.dumps({"tasks": args.tasks, "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
