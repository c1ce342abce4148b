#!/usr/bin/env python3
"""event-fanout relay throughput: pending outbox rows -> published, in events per second.

    nox -s bench -- bench/outbox_bench.py [--events 20000] [--batch 500] [--stack]

Without ``--stack`` the publisher port is a no-op, so the figure is the relay's own cost (claim with
SKIP LOCKED, mark sent) on PostgreSQL. With ``--stack`` the relay publishes through a real daprd
sidecar into real Kafka (the local stack's tasks-api sidecar), which is what production does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import insert

from common import ROOT, fresh_database


class NoopPublisher:
    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--stack", action="store_true", help="publish through a real daprd + Kafka")
    args = ap.parse_args()

    from taskflow.adapters import db
    from taskflow.adapters.sql_unit_of_work import SqlUnitOfWork
    from taskflow.adapters.tables import outbox
    from taskflow.bootstrap import system_clock
    from taskflow.service_layer.outbox import relay_outbox

    url = fresh_database("taskflow_bench_outbox")
    engine = db.build_engine(url)
    db.migrate(engine)
    now = datetime.now(UTC)
    rows = []
    for i in range(args.events):
        task_id = str(uuid.uuid4())
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "type": "com.taskflow.bench.v1",
            "source": "/bench",
            "subject": task_id,
            "datacontenttype": "application/json",
            "data": {"n": i, "pad": "x" * 600},
        }
        rows.append(
            {
                "event_id": event["id"],
                "topic": "task-events-dlq",
                "partition_key": task_id,
                "event": json.dumps(event),
                "created_at": now,
                "attempts": 0,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(outbox), rows)

    stack = None
    publisher: object = NoopPublisher()
    if args.stack:
        sys.path.insert(0, str(ROOT / "tools"))
        from taskflow.adapters.dapr import DaprPublisher, Sidecar

        from stack import Stack

        stack = Stack(
            only=["tasks-api"], port=28080, dapr_http_base=23500, dapr_grpc_base=23550, metrics_base=29190
        ).start()
        import os

        app = stack.apps["tasks-api"]
        os.environ["DAPR_HTTP_PORT"] = str(app.dapr_http_port)  # the SDK's sidecar health check reads it
        publisher = DaprPublisher(Sidecar(f"127.0.0.1:{app.dapr_grpc_port}"), "taskflow-pubsub")
    try:
        t0 = time.perf_counter()
        sent = 0
        while sent < args.events:
            result = relay_outbox(SqlUnitOfWork(engine), publisher, system_clock, batch=args.batch)  # type: ignore[arg-type]
            if result.sent == 0:
                break
            sent += result.sent
        wall = time.perf_counter() - t0
    finally:
        if stack is not None:
            stack.stop()
    mode = "daprd+kafka" if args.stack else "no-op publisher"
    print(
        json.dumps(
            {"mode": mode, "events": sent, "seconds": round(wall, 2), "events_per_s": round(sent / wall, 1)}, indent=2
        )
    )


if __name__ == "__main__":
    main()
