#!/usr/bin/env python3
"""Issue 9's measures side by side in one run, embedded mode (`taskflow dev`: gunicorn) on PostgreSQL.

    nox -s bench -- bench/perf_bench.py [--database taskflow_perf] [--seconds 10] [--port 18100]

1. Lists at scale: `bench/dataset.py`'s 1 000 000 tasks (100 000 for user ``bench``; created once,
   reused), every list variant, get, patch, complete and create at concurrency 2, p50/p99, beside
   `/healthz` on the same server and each list's SQL alone through pgbench (the floor).
2. Sustained end-to-end creates in an empty database of its own: ``--clients`` connections create
   for ``--seconds``, then the clock runs until the pipeline has caught up (every task audited,
   no outbox row pending); beside it, pgbench running the same writes (the task row with its tags,
   search vector and indexes plus its outbox row in one transaction; the audit row and the outbox
   mark in a second).
3. CPU milliseconds per create and per list page (the server's processes, user + system).

The load generator is this process (httpx, one keep-alive connection per client thread); the
server is a separate process tree. Everything shares the machine's 2 cores: figures are what this
machine does with client, server and PostgreSQL on it together.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataset

ROOT = Path(__file__).resolve().parent.parent
SECRET = "perf-bench-secret-" + "x" * 32

LISTS = {
    "default list": "",
    "status=completed": "status=completed",
    "status=all": "status=all",
    "priority=high,urgent": "priority=high,urgent",
    "tags=work": "tags=work",
    "tags=work,home (all; never together in the dataset)": "tags=work,home",
    "tags=work,q4 (all)": "tags=work,q4",
    "tags=work,home&tag_mode=any": "tags=work,home&tag_mode=any",
    "overdue=true": "overdue=true",
    "has_due=false": "has_due=false",
    "due_before+due_after": "due_after=2026-11-20T00:00:00Z&due_before=2026-12-10T00:00:00Z",
    "q=milk": "q=milk",
    "q=milk bread": "q=milk%20bread",
    "sort=-priority,title": "sort=-priority,title",
    "sort=title": "sort=title",
    "sort=-due_at": "sort=-due_at",
    "sort=priority": "sort=priority",
    "sort=-priority": "sort=-priority",
    "sort=-priority,due_at (web: Importance)": "sort=-priority,due_at",
    "sort=-created_at (web: Newest first)": "sort=-created_at",
    "sort=created_at": "sort=created_at",
    "sort=-updated_at": "sort=-updated_at",
}


def token(user: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 7200}, SECRET, algorithm="HS256")


def pct(samples: list[float]) -> tuple[float, float]:
    if len(samples) < 2:
        return (samples[0] if samples else float("nan"),) * 2
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return round(q[49], 2), round(q[98], 2)


class Server:
    """`taskflow dev` (gunicorn) as a process tree; CPU time read from /proc."""

    def __init__(self, url: str, port: int, workers: int, threads: int, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_"))}
        env |= {
            "TASKFLOW_DATABASE_URL": url,
            "TASKFLOW_JWT_SECRET": SECRET,
            "TASKFLOW_METRICS_PORT": "0",
            "TASKFLOW_LOG_LEVEL": "WARNING",
            "TASKFLOW_WORKERS": str(workers),
            "TASKFLOW_THREADS": str(threads),
            "TASKFLOW_TELEMETRY": os.environ.get("TASKFLOW_TELEMETRY", "on"),
            "TASKFLOW_GROUP_COMMIT": os.environ.get("TASKFLOW_GROUP_COMMIT", "on"),
        }
        self.log = (workdir / f"server-{port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskflow.cli", "dev", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"taskflow dev did not start; see {self.log.name}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system time of the master and its workers."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def warnings(self) -> list[str]:
        """The server's WARNING and ERROR lines (it logs at WARNING): a figure beside them is suspect."""
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        return [line for line in lines if "WARNING" in line or "ERROR" in line]


def run_clients(
    base: str,
    user: str,
    clients: int,
    seconds: float | None,
    count: int | None,
    request: Callable[[httpx.Client, int], int],
) -> tuple[list[float], int]:
    """``clients`` threads, each with one keep-alive connection; latencies in ms and failures."""
    lat: list[float] = []
    failed = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds if seconds else None
    counter = iter(range(10**9))

    def work() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token(user)}"}, timeout=30) as c:
            mine: list[float] = []
            while True:
                with lock:
                    i = next(counter)
                if (deadline and time.monotonic() > deadline) or (count is not None and i >= count):
                    break
                t0 = time.perf_counter()
                status = request(c, i)
                mine.append((time.perf_counter() - t0) * 1000)
                if status >= 400:
                    with lock:
                        failed[0] += 1
            with lock:
                lat.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, failed[0]


# wrk's request generator: the same body as task_body, numbered per connection thread.
WRK_CREATE = """
local n = 0
local priorities = {"low", "medium", "high"}
local description = string.rep("Remember the oat milk; the shop closes at six. ", 3)
request = function()
  n = n + 1
  local body = string.format(
    '{"title":"Buy milk and bread %d","description":"%s","priority":"%s","tags":["errand","home"],' ..
    '"due_at":"2027-01-15T17:00:00Z","timezone":"Europe/Berlin","reminders":[{"offset":"-PT30M"}]}',
    n, description, priorities[n % 3 + 1])
  return wrk.format("POST", "/v1/tasks", nil, body)
end
"""


def run_wrk(base: str, user: str, clients: int, seconds: int) -> dict[str, Any]:
    """Creates from wrk (C, closed loop, ``clients`` keep-alive connections on 2 threads): the
    issue's load generator, which leaves the server the CPU a Python client would take."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_CREATE)
    try:
        proc = subprocess.run(
            [
                "wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", f.name,
                "-H", f"Authorization: Bearer {token(user)}", "-H", "Content-Type: application/json",
                base + "/v1/tasks",
            ],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    text_ = proc.stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(q: str) -> float:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)$", text_, re.M)
        return round(float(m.group(1)) * unit[m.group(2)], 2) if m else float("nan")

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text_)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text_)
    return {
        "requests": int(re.search(r"(\d+) requests in", text_).group(1)),  # type: ignore[union-attr]
        "failed": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
        "p50": latency("50"),
        "p99": latency("99"),
    }


def task_body(i: int) -> dict[str, Any]:
    return {
        "title": f"Buy milk and bread {i}",
        "description": "Remember the oat milk; the shop closes at six. " * 3,
        "priority": ["low", "medium", "high"][i % 3],
        "tags": ["errand", "home"],
        "due_at": "2027-01-15T17:00:00Z",
        "timezone": "Europe/Berlin",
        "reminders": [{"offset": "-PT30M"}],
    }


# --- pgbench floors ----------------------------------------------------------------------------


def pgbench(url: str, script: str, seconds: int, clients: int) -> tuple[float, float]:
    """(transactions/s, average latency ms) of ``script`` under pgbench."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    os.chmod(f.name, 0o644)
    # the app's connection settings (adapters/db.py): no parallel plans
    env = dict(os.environ, PGPASSWORD=u.password or "", PGOPTIONS="-c max_parallel_workers_per_gather=0")
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-h",
            u.host or "127.0.0.1",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            "-f",
            f.name,
            u.database or "",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    tps = lat = float("nan")
    for line in out.stdout.splitlines():
        if line.startswith("tps ="):
            tps = float(line.split()[2])
        if line.startswith("latency average"):
            lat = float(line.split()[3])
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
    return tps, lat


CREATE_WRITES = """
\\set n random(1, 2000000000)
BEGIN;
INSERT INTO tasks (id, owner_id, title, description, status, priority, tags, due_at, timezone, recurrence,
  reminders, series_id, series_start, occurrence, completed_at, created_at, updated_at, deleted_at, version)
VALUES (md5(:n || '-' || :client_id), 'pgbench', 'Buy milk and bread ' || :n,
  'Remember the oat milk; the shop closes at six.', 'open', 2, '["errand","home"]', now() + interval '30 days',
  'Europe/Berlin', NULL, '[{"offset":"-PT30M"}]', NULL, NULL, 1, NULL, now(), now(), NULL, 1);
INSERT INTO task_tags (task_id, tag, owner_id)
  VALUES (md5(:n || '-' || :client_id), 'errand', 'pgbench'), (md5(:n || '-' || :client_id), 'home', 'pgbench');
INSERT INTO reminders (id, task_id, owner_id, slot, fire_at, status, late, fired_at, created_at)
  VALUES (md5(:n || 'r' || :client_id), md5(:n || '-' || :client_id), 'pgbench', 0, now() + interval '29 days',
          'pending', false, NULL, now());
INSERT INTO outbox (event_id, topic, partition_key, event, created_at, attempts)
  VALUES (md5(:n || 'e' || :client_id), 'task-events', md5(:n || '-' || :client_id), repeat('x', 900), now(), 0);
COMMIT;
BEGIN;
INSERT INTO audit_log (event_id, task_id, owner_id, type, time, actor, changes, recorded_at)
  VALUES (md5(:n || 'e' || :client_id), md5(:n || '-' || :client_id), 'pgbench', 'com.taskflow.task.created.v1',
          now(), 'pgbench', '{}', now());
UPDATE outbox SET sent_at = now() WHERE event_id = md5(:n || 'e' || :client_id);
COMMIT;
"""


def list_sql(url: str, query: str) -> str:
    """The SELECT the API runs for ``query`` (compiled with literal values), for pgbench."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine
    from sqlalchemy.dialects import postgresql

    from taskflow.adapters import repository
    from taskflow.api.schemas import ListQuery

    captured: list[Any] = []
    engine = create_engine(url)

    class Capture:
        dialect = engine.dialect

        def execute(self, stmt: Any, *a: Any) -> Any:
            captured.append(stmt)
            raise StopIteration

    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    q = ListQuery.parse(MultiDict(parse_qsl(query)))
    with contextlib.suppress(StopIteration):
        repository.TaskRepository(Capture()).list(dataset.USER, q, datetime.now(UTC))  # type: ignore[arg-type]
    engine.dispose()
    sql = str(captured[0].compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return sql + ";\n"


def explain(url: str) -> None:
    """EXPLAIN ANALYZE of every list variant's SQL, as bench/README.md shows them (on the app's engine:
    the same connection settings)."""
    from sqlalchemy import text

    from taskflow.adapters import db

    engine = db.build_engine(url)
    with engine.connect() as conn:
        for name, query in LISTS.items():
            sql = list_sql(url, query).rstrip().rstrip(";")
            plan = [r[0] for r in conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql))]
            print(f"### {name} (`{query or 'no parameters'}`)\n```")
            keep = (
                "Limit",
                "Index",
                "Bitmap",
                "Sort",
                "Incremental",
                "Merge",
                "Append",
                "Seq",
                "Filter",
                "Rows Removed",
                "Execution",
                "Heap",
                "Nested",
                "Recheck",
                "Presorted",
                "Full-sort",
            )
            for line in plan:
                if any(k in line for k in keep):
                    print(line)
            print("```\n", flush=True)
    engine.dispose()


# --- the run -----------------------------------------------------------------------------------


def lists_phase(args: argparse.Namespace, out: dict[str, Any]) -> None:
    url = dataset.ensure(args.database)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(url, args.port, args.workers, args.threads, Path(tmp))
        try:
            base = server.base
            rows: list[dict[str, Any]] = []

            def measure(
                name: str,
                fn: Callable[[httpx.Client, int], int],
                n: int,
                floor: str | None = None,
                user: str = dataset.USER,
            ) -> None:
                run_clients(base, user, 2, None, 20, fn)  # warm up
                cpu0 = server.cpu_seconds()
                lat, failed = run_clients(base, user, 2, None, n, fn)
                cpu = (server.cpu_seconds() - cpu0) * 1000 / max(1, len(lat))
                p50, p99 = pct(lat)
                row = {"request": name, "p50_ms": p50, "p99_ms": p99, "failed": failed, "cpu_ms": round(cpu, 1)}
                if floor is not None:
                    tps, avg = pgbench(url, floor, 5, 2)
                    row |= {"sql_tps": round(tps) if tps == tps else None, "sql_ms": round(avg, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)

            measure("GET /healthz", lambda c, i: c.get("/healthz").status_code, args.requests)
            for name, query in LISTS.items() if args.only != "writes" else ():
                path = "/v1/tasks?" + query
                measure(name, lambda c, i, p=path: c.get(p).status_code, args.requests, list_sql(url, query))
            # /healthz again: the machine's noise at the end of the lists, beside the first figure
            measure("GET /healthz (after the lists)", lambda c, i: c.get("/healthz").status_code, args.requests)
            page = httpx.get(base + "/v1/tasks?limit=200", headers={"Authorization": f"Bearer {token(dataset.USER)}"})
            ids = [t["id"] for t in page.json()["items"]]
            measure(
                "GET /v1/tasks/{id}", lambda c, i: c.get(f"/v1/tasks/{ids[i % len(ids)]}").status_code, args.requests
            )
            measure(
                "PATCH /v1/tasks/{id}",
                lambda c, i: c.patch(f"/v1/tasks/{ids[i % len(ids)]}", json={"title": f"Renamed {i}"}).status_code,
                args.requests,
            )
            # creates by another user: ``bench`` has 80 000 open tasks, over the quota (docs/limits.md)
            writer = "bench-writer"
            new_task = lambda c, i: c.post("/v1/tasks", json=task_body(i)).status_code  # noqa: E731
            measure("POST /v1/tasks", new_task, args.requests, user=writer)
            made = httpx.get(
                base + "/v1/tasks?sort=-created_at&limit=200",
                headers={"Authorization": f"Bearer {token(writer)}"},
            ).json()["items"]
            fresh = [t["id"] for t in made]
            measure(
                "POST /v1/tasks/{id}/complete",
                lambda c, i: c.post(f"/v1/tasks/{fresh[i % len(fresh)]}/complete").status_code,
                min(args.requests, len(fresh)),
                user=writer,
            )
            out["lists"] = rows
        finally:
            server.stop()


def pipeline_phase(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from sqlalchemy import create_engine, text

    db = args.database + "_e2e"
    url = dataset.create(db, total=0, mine=0)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(url, args.port, args.workers, args.threads, Path(tmp))
        engine = create_engine(url)

        def counters() -> tuple[int, int]:
            """Database sessions opened so far (a pool that churns opens many) and transactions committed."""
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = :d"), {"d": db}
                ).one()
                return int(row[0]), int(row[1])

        try:
            sessions0, commits0 = counters()
            cpu0 = server.cpu_seconds()
            t0 = time.monotonic()
            if args.load == "wrk":
                loaded = run_wrk(server.base, "e2e", args.clients, args.seconds)
                failed, (p50, p99) = loaded["failed"], (loaded["p50"], loaded["p99"])
            else:
                lat, failed = run_clients(
                    server.base,
                    "e2e",
                    args.clients,
                    args.seconds,
                    None,
                    lambda c, i: c.post("/v1/tasks", json=task_body(i)).status_code,
                )
                p50, p99 = pct(lat)
            accepted_s = time.monotonic() - t0
            with engine.connect() as conn:  # what was accepted is what the database holds
                created = int(conn.execute(text("SELECT count(*) FROM tasks")).scalar_one())
            while True:
                try:
                    with engine.connect() as conn:
                        audited = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
                        pending = conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar_one()
                except Exception as exc:  # the shared server restarted: note it, keep polling
                    print(f"poll failed ({type(exc).__name__}); the figure includes the outage", flush=True)
                    engine.dispose()
                    time.sleep(1)
                    continue
                if audited >= created and pending == 0:
                    break
                if time.monotonic() - t0 > args.seconds * 20:
                    print(f"pipeline did not catch up: audited {audited}/{created}, pending {pending}")
                    break
                time.sleep(0.05)
            caught_up_s = time.monotonic() - t0
            cpu_ms = (server.cpu_seconds() - cpu0) * 1000 / max(1, created)
            sessions1, commits1 = counters()
            opened = sessions1 - sessions0
        finally:
            engine.dispose()
            server.stop()
        warnings = server.warnings()
    for line in warnings[:5]:
        print("server:", line, flush=True)
    tps, avg = pgbench(url, CREATE_WRITES, args.seconds, args.clients)
    result = {
        "load": args.load,
        "creates": created,
        "failed": failed,
        "accepted_per_s": round(created / accepted_s, 1),
        "end_to_end_per_s": round(created / caught_up_s, 1),
        "create_p50_ms": p50,
        "create_p99_ms": p99,
        "cpu_ms_per_create": round(cpu_ms, 1),
        "database_sessions_opened": opened,
        "commits_per_create": round((commits1 - commits0) / max(1, created), 2),  # the pipeline's too
        "group_commit": os.environ.get("TASKFLOW_GROUP_COMMIT", "on"),
        "server_warnings": len(warnings),
        "pgbench_same_writes_tps": round(tps),
        "pgbench_latency_ms": avg,
        "ratio": round(created / caught_up_s / tps, 3) if tps == tps else None,
        "load_average_1m": round(os.getloadavg()[0], 1),  # the machine is shared: read figures beside it
    }
    print(json.dumps(result), flush=True)
    out["pipeline"] = result
    dataset.drop(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default="taskflow_perf")
    ap.add_argument("--port", type=int, default=18100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400, help="requests per list variant")
    ap.add_argument("--clients", type=int, default=16, help="connections creating in the pipeline phase")
    ap.add_argument("--seconds", type=int, default=10, help="length of the create load")
    ap.add_argument("--only", choices=["lists", "pipeline", "explain", "writes"])
    ap.add_argument(
        "--load",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="the pipeline's load generator: wrk (apt-get install wrk; the default when installed) or "
        "this process's httpx threads (they take CPU from the server on 2 cores)",
    )
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if args.only == "explain":
        explain(dataset.ensure(args.database))
        return
    if args.only in (None, "pipeline"):
        pipeline_phase(args, out)
    if args.only in (None, "lists", "writes"):
        lists_phase(args, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
