"""Cold start per function next to its real, running daprd (the local stack), as a function process
that starts beside a sidecar sees it: process start to the first 200 on the function's own first
request, which now goes through the sidecar where it needs it (secrets, configuration, publish,
state) and so pays for the Dapr SDK's import and its first calls.

    flock /tmp/taskflow-kafka9092.lock nox -s bench -- bench/cold_start_sidecar.py [--runs 3]

The stack runs on its own ports and database (``--port`` and the sidecar bases; database
``taskflow_bench_cold``, recreated empty). Each function's process is stopped and started again
``--runs`` times while its daprd keeps running; the median is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import cold_start as cs

from common import ROOT

sys.path.insert(0, str(ROOT / "tools"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=18600)
    ap.add_argument("--dapr-http-base", type=int, default=13600)
    ap.add_argument("--dapr-grpc-base", type=int, default=13650)
    ap.add_argument("--metrics-base", type=int, default=19600)
    args = ap.parse_args()
    import procs
    from stack import Stack

    os.environ["TASKFLOW_JWT_SECRET"] = cs.SECRET  # into the stack's secret store: tasks-api reads it there
    os.environ.setdefault("TASKFLOW_LOG_LEVEL", "WARNING")
    stack = Stack(
        port=args.port,
        dapr_http_base=args.dapr_http_base,
        dapr_grpc_base=args.dapr_grpc_base,
        metrics_base=args.metrics_base,
        database="taskflow_bench_cold",
        fresh_database=True,
        supervise=False,  # this script stops and starts the functions itself
    )
    with stack:
        print(f"{'function':<20}{'first ms':>10}   (median of {args.runs}; every run)")
        for a in stack.apps.values():
            name = a.spec.folder
            times = []
            for _ in range(args.runs):
                assert a.app is not None
                procs.stop([a.app], timeout=15, log=print)
                req = cs._first_request(name)
                req.headers["dapr-api-token"] = stack.app_api_token
                start = time.perf_counter()
                stack._start_app(a)
                times.append(cs._time_to_200(a.app_port, req, start, timeout=90))
            runs = ", ".join(f"{t:.0f}" for t in times)
            print(f"{name:<20}{statistics.median(times):>10.0f}   ({runs})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
