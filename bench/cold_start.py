"""Cold start per function: process start to the first 200, as a scale-from-zero pod sees it.

    python bench/cold_start.py [--runs 5] [--against OTHER_CHECKOUT]

Each function runs alone under ``functions-framework`` in ``dapr`` mode against a migrated SQLite
database (no sidecar: every first request below answers without one). Two figures per function,
medians over ``--runs`` fresh processes:

- ``healthz``: process start to the first 200 on ``GET /healthz`` (imports and server start);
- ``first``: process start to the first 200 on the function's own first request (tasks-api: a
  task list; audit: a history; the crons: one tick; recurrence and notifier: one event), which
  also builds what that request needs (engine, ports) on first use.

``--compare-telemetry`` measures each function with ``TASKFLOW_TELEMETRY=off`` and ``on`` (the
OpenTelemetry SDK is set up at the first request; no exporter endpoint) and prints the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskflow.functions import FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent
SECRET = "cold-start-bench-secret-0123456789abcdef"


@dataclass(frozen=True)
class Req:
    path: str
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _token() -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": "bench", "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


def _event(etype: str, data: Any) -> bytes:
    body = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": etype, "source": "/bench", "data": data}
    return json.dumps(body).encode()


def _first_request(name: str) -> Req:
    task = {
        "id": str(uuid.uuid4()),
        "title": "t",
        "description": "",
        "status": "completed",
        "priority": "none",
        "tags": [],
        "due_at": None,
        "timezone": "UTC",
        "recurrence": None,
        "reminders": [],
        "series_id": None,
        "occurrence": 1,
        "completed_at": "2026-01-01T00:00:00Z",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "version": 2,
    }
    ce = {"content-type": "application/cloudevents+json"}
    if name == "tasks_api":
        return Req("/v1/tasks", headers={"Authorization": f"Bearer {_token()}"})
    if name == "audit":
        return Req(f"/history/{uuid.uuid4()}?owner=bench")
    if name in ("event_fanout", "reminder_dispatch"):
        return Req("/cron", data=b"", headers={"content-type": "application/json"})
    if name == "recurrence":
        data = {"task": task, "actor": "bench", "changes": {}}
        return Req("/", data=_event("com.taskflow.task.completed.v1", data), headers=ce)
    reminder = {
        "reminder_id": str(uuid.uuid4()),
        "task_id": task["id"],
        "owner_id": "bench",
        "title": "t",
        "fire_at": "2026-01-01T00:00:00Z",
    }
    return Req("/", data=_event("com.taskflow.reminder.due.v1", reminder), headers=ce)


def _time_to_200(port: int, req: Req, start: float, timeout: float = 30.0) -> float:
    url = f"http://127.0.0.1:{port}{req.path}"
    while time.perf_counter() - start < timeout:
        try:
            r = urllib.request.Request(
                url, data=req.data, headers=req.headers, method="POST" if req.data is not None else "GET"
            )
            with urllib.request.urlopen(r, timeout=5) as resp:
                if resp.status == 200:
                    return (time.perf_counter() - start) * 1000
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.005)
    raise RuntimeError(f"{url}: no 200 within {timeout} s")


def _run_once(name: str, env: dict[str, str], first: bool) -> float:
    return _run_once_cpu(name, env, first)[0]


def _run_once_cpu(name: str, env: dict[str, str], first: bool) -> tuple[float, float]:
    """(ms to the first 200, CPU ms the function's process spent in all: user + system, which a busy
    machine stretches far less than wall time)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ms = _run_once_wall(name, env, first)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return ms, cpu


def _run_once_wall(name: str, env: dict[str, str], first: bool) -> float:
    port = _free_port()
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "functions-framework"),
        "--source",
        str(ROOT / "functions" / name / "main.py"),
        "--target",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        req = _first_request(name) if first else Req("/healthz")
        return _time_to_200(port, req, start)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        if proc.returncode not in (0, -15):
            print(err.decode()[-2000:], file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare-telemetry", action="store_true", help="off vs on, and the added time")
    parser.add_argument("--otlp", help="with --compare-telemetry: OTLP endpoint of 'on' (exporters loaded too)")
    parser.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="also time another checkout's shared/ (e.g. main, `git archive main | tar -x -C DIR`), "
        "alternating its runs with this checkout's so both see the same machine load",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/cold.db"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # to measure another checkout's shared/
            "TASKFLOW_MODE": "dapr",
            "TASKFLOW_DATABASE_URL": url,
            "TASKFLOW_JWT_SECRET": SECRET,
            "TASKFLOW_WEBHOOK_SIGNING_KEY": SECRET,
            "DAPR_HTTP_PORT": str(_free_port()),  # nothing listens: a first request must not need the sidecar
            "DAPR_GRPC_PORT": str(_free_port()),
            # reminder-dispatch's first tick asks the configuration store: with no sidecar the Dapr SDK
            # gives up after one health probe (it waits up to 60 s for a sidecar that is starting)
            "DAPR_HEALTH_TIMEOUT": "0",
            "TASKFLOW_LOG_LEVEL": "WARNING",
        }
        subprocess.run([sys.executable, "-m", "taskflow.cli", "migrate"], env=env, check=True, capture_output=True)
        if args.compare_telemetry:
            _compare_telemetry(env, args.runs, args.otlp)
            return 0
        if args.against:
            other = {**env, "PYTHONPATH": str(Path(args.against).resolve() / "shared")}
            print(
                f"{'function':<20}{'first ms':>10}{'against':>10}{'CPU ms':>10}{'against':>10}"
                f"   (medians of {args.runs})"
            )
            for name in (f.folder for f in FUNCTIONS):
                mine, theirs = [], []
                for _ in range(args.runs):
                    theirs.append(_run_once_cpu(name, other, True))
                    mine.append(_run_once_cpu(name, env, True))
                cols = [statistics.median(x[i] for x in runs) for i in (0, 1) for runs in (mine, theirs)]
                print(f"{name:<20}" + "".join(f"{c:>10.0f}" for c in cols), flush=True)
            return 0
        print(f"{'function':<20}{'healthz ms':>12}{'first ms':>12}   (median of {args.runs})")
        for name in (f.folder for f in FUNCTIONS):
            health = statistics.median(_run_once(name, env, False) for _ in range(args.runs))
            first = statistics.median(_run_once(name, env, True) for _ in range(args.runs))
            print(f"{name:<20}{health:>12.0f}{first:>12.0f}")
    return 0


def _compare_telemetry(env: dict[str, str], runs: int, otlp: str | None) -> None:
    """Both settings interleaved run by run, so that the machine's load drifts into both alike; wall
    time to the first 200 and CPU of the whole process (start, first request, shutdown)."""
    print(f"{'':<20}{'first 200, wall ms':>30}{'process CPU ms':>30}   (medians of {runs})")
    print(f"{'function':<20}" + f"{'off':>10}{'on':>10}{'added':>10}" * 2)
    for name in (f.folder for f in FUNCTIONS):
        runs_: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for _ in range(runs):
            for mode in ("off", "on"):
                extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp} if otlp and mode == "on" else {}
                runs_[mode].append(_run_once_cpu(name, {**env, "TASKFLOW_TELEMETRY": mode, **extra}, True))
        row = ""
        for i in (0, 1):
            a, b = (statistics.median(r[i] for r in runs_[m]) for m in ("off", "on"))
            row += f"{a:>10.0f}{b:>10.0f}{b - a:>10.0f}"
        print(f"{name:<20}{row}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
