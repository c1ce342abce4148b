#!/usr/bin/env python3
"""The local stack: start time, and create -> audit-row latency at a steady request rate.

    nox -s bench -- bench/stack_bench.py [--rate 50] [--seconds 30]
    nox -s bench -- bench/stack_bench.py --find-max [--seconds 15]   # the maximum sustained rate

Start time is measured from `Stack.start()` to every sidecar and app answering healthy (bootstrap
outputs already built: "warm"; the first build on a new machine is reported by `.ci/run`'s log).
Latency: a task is created through tasks-api at a steady rate; its `task.created` event travels
tasks-api -> daprd -> Kafka -> daprd -> audit, which records `recorded_at`. The figure is
recorded_at minus the moment the client sent the request (one clock: the same machine). The
first seconds are shown second by second: the stack reports ready only once an event has made the
round trip (tools/stack.py), so the first second should look like the rest.

``--find-max`` runs steps of ``--seconds`` at rising rates on the same stack and reports the highest
rate the stack sustains: the load generator achieved it, every create succeeded, and every task was
audited within a second of the last request with create -> audit p99 under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from common import ROOT, percentiles

sys.path.insert(0, str(ROOT / "tools"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    # Below the kernel's ephemeral range (Linux: 32768-60999): there, an outgoing connection made
    # while the stack starts (a sidecar's, the broker's) can hold a port an app then cannot bind.
    ap.add_argument("--port", type=int, default=28080, help="tasks-api's port (the others follow it)")
    ap.add_argument("--dapr-http-base", type=int, default=23500)
    ap.add_argument("--dapr-grpc-base", type=int, default=23550)
    ap.add_argument("--metrics-base", type=int, default=29190)
    ap.add_argument("--moto-port", type=int, default=None, help="default: --port + 93")
    ap.add_argument("--otlp-base", type=int, default=None, help="the collector's 3 ports (default: --port + 90)")
    ap.add_argument("--telemetry", action="store_true", help="run the OpenTelemetry Collector too")
    ap.add_argument("--find-max", action="store_true", help="step the rate up until the stack falls behind")
    ap.add_argument("--rates", default="50,100,150,200,250,300,400", help="the steps of --find-max (req/s)")
    ap.add_argument("--database", default=None, help="a database of its own, recreated empty (default: the stack's)")
    args = ap.parse_args()

    from stack import Stack

    os.environ.setdefault("TASKFLOW_LOG_LEVEL", "WARNING")
    t0 = time.perf_counter()
    otlp = args.otlp_base if args.otlp_base is not None else args.port + 90
    ports = {
        "port": args.port,
        "dapr_http_base": args.dapr_http_base,
        "dapr_grpc_base": args.dapr_grpc_base,
        "metrics_base": args.metrics_base,
        "app_metrics_base": args.metrics_base + 50,
        "moto_port": args.moto_port if args.moto_port is not None else args.port + 93,
        "otlp_grpc_port": otlp,
        "otlp_http_port": otlp + 1,
        "collector_prometheus_port": otlp + 2,
        "telemetry": args.telemetry,
    }
    db = {"database": args.database, "fresh_database": True} if args.database else {}
    stack = Stack(**ports, **db).start()  # type: ignore[arg-type]
    start_s = time.perf_counter() - t0
    try:
        secrets = json.loads(stack.secrets_file.read_text())
        engine = create_engine(secrets["database-url"])
        client = httpx.Client(
            base_url=stack.api_url,
            timeout=30,
            # functions-framework's gunicorn closes a connection idle for 2 s (its keep-alive); a pooled
            # connection reused at that instant fails on the client ("Server disconnected" / reset).
            # Expire idle connections before the server does (Knative's queue-proxy shields real clients).
            limits=httpx.Limits(keepalive_expiry=1.5, max_connections=400),
        )
        report: dict[str, object] = {"stack_start_s": round(start_s, 1)}
        if not args.find_max:
            report |= run_step(client, engine, secrets["jwt-secret"], args.rate, args.seconds, per_second=True)
        else:
            steps = []
            for rate in [float(r) for r in args.rates.split(",")]:
                step = run_step(client, engine, secrets["jwt-secret"], rate, args.seconds, per_second=False)
                steps.append(step)
                print(json.dumps(step), flush=True)
                if not step["kept_up"]:
                    break
            kept = [s["requested_rate"] for s in steps if s["kept_up"]]
            report |= {"steps": steps, "max_sustained_rate": max(kept) if kept else None}
        print(json.dumps(report, indent=2))
    finally:
        stack.stop()


def run_step(
    client: httpx.Client, engine: Any, secret: str, rate: float, seconds: float, per_second: bool
) -> dict[str, Any]:
    """Create tasks at ``rate`` for ``seconds`` (open loop) as a user of the step's own (the per-user
    quota of open tasks is far away), then wait until audit has them all."""
    import jwt

    sent: dict[str, datetime] = {}
    lock = threading.Lock()
    failures: dict[str, int] = {}
    n = int(rate * seconds)
    interval = 1.0 / rate
    begin = time.perf_counter()
    threads = []
    user = f"bench-stack-{uuid.uuid4().hex[:8]}"
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, secret, "HS256")
    headers = {"Authorization": f"Bearer {token}"}

    def create(i: int) -> None:
        at = datetime.now(UTC)
        try:
            r = client.post("/v1/tasks", json={"title": f"latency {i}"}, headers=headers)
        except httpx.HTTPError as exc:
            with lock:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return
        with lock:
            if r.status_code != 201:
                failures[f"HTTP {r.status_code}"] = failures.get(f"HTTP {r.status_code}", 0) + 1
            else:
                sent[r.json()["id"]] = at

    for i in range(n):  # open loop: a request every 1/rate s, whatever the answers do
        delay = begin + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=create, args=(i,))
        t.start()
        threads.append(t)
    sending_s = time.perf_counter() - begin
    for t in threads:
        t.join()
    last_sent = datetime.now(UTC)
    achieved = n / sending_s
    deadline = time.monotonic() + 60
    rows: dict[str, datetime] = {}
    while time.monotonic() < deadline and len(rows) < len(sent):
        with engine.connect() as conn:
            result = conn.execute(
                text(
                    "SELECT task_id, recorded_at FROM audit_log WHERE owner_id = :user "
                    "AND type = 'com.taskflow.task.created.v1'"
                ),
                {"user": user},
            )
            rows = {r[0]: r[1] for r in result if r[0] in sent}
        time.sleep(0.2)
    lat = [(rows[k] - sent[k]).total_seconds() * 1000 for k in rows]
    first = min(sent.values()) if sent else last_sent
    drained_s = max(((rows[k] - last_sent).total_seconds() for k in rows), default=0.0)
    out: dict[str, Any] = {
        "requested_rate": rate,
        "achieved_rate": round(achieved, 1),
        "created": len(sent),
        "failed": failures,
        "audited": len(rows),
        "create_to_audit_ms": percentiles(lat) if len(lat) > 2 else None,
        "audited_within_s_of_last_request": round(max(drained_s, 0.0), 2),
        "load_average_1m": round(os.getloadavg()[0], 1),  # the machine is shared: read figures beside it
    }
    out["kept_up"] = bool(
        not failures
        and achieved >= 0.97 * rate
        and len(rows) == len(sent) == n
        and drained_s <= 1.0
        and lat
        and out["create_to_audit_ms"]["p99"] <= 1000
    )
    if per_second:
        by_second: dict[int, list[float]] = {}
        for k in rows:
            by_second.setdefault(int((sent[k] - first).total_seconds()), []).append(
                (rows[k] - sent[k]).total_seconds() * 1000
            )
        out["p99_ms_by_second"] = {s: percentiles(v)["p99"] for s, v in sorted(by_second.items()) if len(v) > 2}
        later = [v for s, vals in by_second.items() if s >= 5 for v in vals]
        out["create_to_audit_ms_after_first_5s"] = percentiles(later) if len(later) > 2 else None
    return out


if __name__ == "__main__":
    main()
