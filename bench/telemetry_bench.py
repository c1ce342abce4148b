#!/usr/bin/env python3
"""What telemetry costs tasks-api: create and list throughput with TASKFLOW_TELEMETRY=off vs on.

    nox -s bench -- bench/telemetry_bench.py [--requests 1000] [--threads 4] [--rounds 2]
        [--database-url postgresql+pg8000://...] [--otlp http://127.0.0.1:4318]

tasks-api runs as in production, under ``functions-framework`` (gunicorn) in embedded mode with no
publisher (events stay in the outbox): one server process per setting, alternated ``--rounds``
times in the same run so that the machine's load drifts into both alike. "on" is the default
product setting (SDK spans, SQL spans, metrics); with ``--otlp`` the "on" server also exports spans
and metrics to that OTLP/HTTP endpoint (a running collector, e.g. ``python tools/otelcol.py run``).
The load generator runs in this process (threads, keep-alive connections).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET = "telemetry-bench-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    ff = Path(sys.executable).parent / "functions-framework"
    cmd = [str(ff), "--target", "tasks_api", "--source", str(ROOT / "functions/tasks_api/main.py")]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"tasks-api did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")


def _load(base: str, token: str, requests: int, threads: int) -> dict[str, tuple[float, float, float]]:
    """(req/s, p50 ms, p99 ms) of POST /v1/tasks and GET /v1/tasks?limit=50."""
    headers = {"Authorization": f"Bearer {token}"}
    out = {}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=30) for _ in range(threads)]

    def run(kind: str, i: int) -> float:
        c = clients[i % threads]
        t0 = time.perf_counter()
        if kind == "create":
            r = c.post("/v1/tasks", json={"title": f"bench {i}", "tags": ["work"], "priority": "high"})
            assert r.status_code == 201, r.text
        else:
            r = c.get("/v1/tasks", params={"limit": "50"})
            assert r.status_code == 200, r.text
        return (time.perf_counter() - t0) * 1000

    for kind in ("create", "list"):
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i, k=kind: run(k, i), range(min(50, requests))))  # warm-up
            t0 = time.perf_counter()
            lat = sorted(pool.map(lambda i, k=kind: run(k, i), range(requests)))
            wall = time.perf_counter() - t0
        out[kind] = (requests / wall, lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1])
    for c in clients:
        c.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--database-url", help="default: a fresh SQLite file")
    ap.add_argument("--otlp", help="OTLP/HTTP endpoint the 'on' server exports to")
    args = ap.parse_args()

    import jwt

    now = int(time.time())
    token = jwt.encode({"sub": "bench", "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")
    results: dict[str, list[dict[str, tuple[float, float, float]]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TASKFLOW_MODE": "embedded",
            "TASKFLOW_DATABASE_URL": url,
            "TASKFLOW_JWT_SECRET": SECRET,
            "TASKFLOW_LOG_LEVEL": "WARNING",
        }
        for rnd in range(args.rounds):
            for mode in ("off", "on"):
                env = {**base_env, "TASKFLOW_TELEMETRY": mode}
                if mode == "on" and args.otlp:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.otlp
                port = _free_port()
                proc = _server(env, port)
                try:
                    results[mode].append(_load(f"http://127.0.0.1:{port}", token, args.requests, args.threads))
                finally:
                    proc.terminate()
                    proc.wait(timeout=15)
                r = results[mode][-1]
                print(
                    f"round {rnd + 1} {mode:>3}: create {r['create'][0]:.0f} req/s, list {r['list'][0]:.0f} req/s",
                    flush=True,
                )
    cols = ("off req/s", "on req/s", "change", "off p50", "on p50", "off p99", "on p99")
    print(f"\n{'request':<28}" + "".join(f"{c:>10}" for c in cols))
    for kind, label in (("create", "POST /v1/tasks"), ("list", "GET /v1/tasks?limit=50")):

        def med(mode: str, i: int, kind: str = kind) -> Any:
            return statistics.median(r[kind][i] for r in results[mode])

        off, on = med("off", 0), med("on", 0)
        print(
            f"{label:<28}{off:>10.0f}{on:>10.0f}{(on - off) / off * 100:>9.1f}%"
            f"{med('off', 1):>10.1f}{med('on', 1):>10.1f}{med('off', 2):>10.1f}{med('on', 2):>10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
