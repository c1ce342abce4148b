#!/usr/bin/env python3
"""The local stack: start time, and create -> audit-row latency at a steady request rate.

    nox -s bench -- bench/stack_bench.py [--rate 50] [--seconds 30]

Start time is measured from `Stack.start()` to every sidecar and app answering healthy (bootstrap
outputs already built: "warm"; the first build on a new machine is reported by `.ci/run`'s log).
Latency: a task is created through tasks-api at a steady rate; its `task.created` event travels
tasks-api -> daprd -> Kafka -> daprd -> audit, which records `recorded_at`. The figure is
recorded_at minus the moment the client sent the request (one clock: the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import create_engine, text

from common import ROOT, percentiles

sys.path.insert(0, str(ROOT / "tools"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--port", type=int, default=38080, help="tasks-api's port (the others follow it)")
    ap.add_argument("--dapr-http-base", type=int, default=33500)
    ap.add_argument("--dapr-grpc-base", type=int, default=33550)
    ap.add_argument("--metrics-base", type=int, default=39190)
    ap.add_argument("--database", default=None, help="a database of its own, recreated empty (default: the stack's)")
    args = ap.parse_args()
    import jwt

    from stack import SECRETS_FILE, Stack

    os.environ.setdefault("TASKFLOW_LOG_LEVEL", "WARNING")
    t0 = time.perf_counter()
    ports = {
        "port": args.port,
        "dapr_http_base": args.dapr_http_base,
        "dapr_grpc_base": args.dapr_grpc_base,
        "metrics_base": args.metrics_base,
    }
    db = {"database": args.database, "fresh_database": True} if args.database else {}
    stack = Stack(**ports, **db).start()  # type: ignore[arg-type]
    start_s = time.perf_counter() - t0
    try:
        secrets = json.loads(SECRETS_FILE.read_text())
        engine = create_engine(secrets["database-url"])
        token = jwt.encode({"sub": "bench-stack", "exp": int(time.time()) + 3600}, secrets["jwt-secret"], "HS256")
        sent: dict[str, datetime] = {}
        lock = threading.Lock()
        # functions-framework's gunicorn closes a connection idle for 2 s (its keep-alive); a pooled
        # connection reused at that instant fails on the client ("Server disconnected" / reset).
        # Expire idle connections before the server does (Knative's queue-proxy shields real clients).
        client = httpx.Client(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            limits=httpx.Limits(keepalive_expiry=1.5),
        )
        failures: dict[str, int] = {}
        n = int(args.rate * args.seconds)
        interval = 1.0 / args.rate
        begin = time.perf_counter()
        threads = []

        def create(i: int) -> None:
            at = datetime.now(UTC)
            try:
                r = client.post("/v1/tasks", json={"title": f"latency {i}"})
            except httpx.HTTPError as exc:
                with lock:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                return
            if r.status_code != 201:
                with lock:
                    failures[f"HTTP {r.status_code}"] = failures.get(f"HTTP {r.status_code}", 0) + 1
            else:
                with lock:
                    sent[r.json()["id"]] = at

        for i in range(n):  # open loop: a request every 1/rate s, whatever the answers do
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=create, args=(i,))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        achieved = n / (time.perf_counter() - begin)
        deadline = time.monotonic() + 60
        rows: dict[str, datetime] = {}
        while time.monotonic() < deadline and len(rows) < len(sent):
            with engine.connect() as conn:
                result = conn.execute(
                    text(
                        "SELECT task_id, recorded_at FROM audit_log WHERE owner_id = 'bench-stack' "
                        "AND type = 'com.taskflow.task.created.v1'"
                    )
                )
                rows = {r[0]: r[1] for r in result if r[0] in sent}
            time.sleep(1)
        lat = [(rows[k] - sent[k]).total_seconds() * 1000 for k in rows]
        first = min(sent.values()) if sent else None
        later = [
            (rows[k] - sent[k]).total_seconds() * 1000
            for k in rows
            if first is not None and (sent[k] - first).total_seconds() >= 5
        ]
        print(
            json.dumps(
                {
                    "stack_start_s": round(start_s, 1),
                    "requested_rate": args.rate,
                    "achieved_rate": round(achieved, 1),
                    "created": len(sent),
                    "failed": failures,
                    "audited": len(rows),
                    "create_to_audit_ms": percentiles(lat) if lat else None,
                    "create_to_audit_ms_after_first_5s": percentiles(later) if len(later) > 2 else None,
                },
                indent=2,
            )
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
