#!/usr/bin/env python3
"""Chaos: the supervised local stack under steady mixed load while seeded faults hit it, then, after a
bounded drain, the invariants: nothing acknowledged lost, nothing applied twice.

    nox -s chaos                                  # about 5 minutes, seed 1
    nox -s chaos -- --minutes 1 --seed 7          # what CI runs
    python tools/chaos.py --minutes 5 --seed 1    # the same without nox (inside the dev venv)

Faults (their times and targets drawn from the seed; counts scale with ``--minutes``, at 5 minutes):
``kill -9`` of the Kafka broker (11), of the functions and their daprd sidecars (14: every consumer
function and every daprd at least once, ``tasks-api`` too, while it takes writes; the other
processes of the stack, such as the OpenTelemetry Collector, once), PostgreSQL
``restart -m immediate`` (6), and ``SIGSTOP`` of a consumer and of a sidecar for longer than Dapr's
timeouts (65 s > the 60 s delivery timeout), then ``SIGCONT``. The stack restarts what dies
(tools/stack.py's supervisor).

Isolation: everything here is the suite's own, so nothing shared is killed or restarted: a Kafka
broker on ``--kafka-port`` (19092; controller +1, pods +2) with its data in ``.cache/chaos/kafka``,
a PostgreSQL cluster ``--pg-cluster`` (``chaos``, port 15433; created with ``pg_createcluster`` when
missing and dropped again afterwards; needs root), the database ``taskflow_chaos`` recreated empty,
and the stack's ports (``--port`` 18400, sidecars from 13400/13450/19400, the collector's
``--port`` + 90..92), webhook receiver 18499.
Logs: ``.cache/chaos/run/logs/`` (functions, daprd) and ``.cache/chaos/logs/kafka.log``.

Exit status: 0 when every invariant holds, 1 on any violation (each is printed), 2 on a setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import chaos_invariants  # noqa: E402
from chaos_load import Receiver, Record, Worker  # noqa: E402

import kafka_node  # noqa: E402

REPO = TOOLS.parent
CHAOS = REPO / ".cache" / "chaos"
PG_VERSION = "15"
CONSUMERS = ("event-fanout", "reminder-dispatch", "notifier", "recurrence", "audit")


def log(msg: str) -> None:
    print(f"[chaos] {time.strftime('%H:%M:%S')} {msg}", flush=True)


# ------------------------------------------------------------------------------ the suite's PostgreSQL


@dataclass
class PgCluster:
    """A PostgreSQL cluster of the suite's own (``pg_createcluster``), so restarts hurt nobody else."""

    name: str
    port: int
    created: bool = False
    started: bool = False

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["pg_ctlcluster", PG_VERSION, self.name, *args], capture_output=True, text=True, timeout=120
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster {PG_VERSION} {self.name} {' '.join(args)}: {res.stderr.strip()}")
        return res

    def status(self) -> str | None:
        res = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
        for line in res.stdout.splitlines():
            cols = line.split()
            if cols[:2] == [PG_VERSION, self.name]:
                if int(cols[2]) != self.port:
                    raise RuntimeError(f"PostgreSQL cluster {self.name} exists on port {cols[2]}, not {self.port}")
                return cols[3]
        return None

    def up(self) -> None:
        if self.name == "main":
            raise RuntimeError("the chaos suite restarts its PostgreSQL: give it a cluster of its own, not 'main'")
        state = self.status()
        if state is None:
            log(f"creating PostgreSQL cluster {PG_VERSION}/{self.name} on port {self.port}")
            res = subprocess.run(
                ["pg_createcluster", PG_VERSION, self.name, "-p", str(self.port), "--",
                 "--auth-local=peer", "--auth-host=scram-sha-256"],
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            if res.returncode != 0:
                raise RuntimeError(f"pg_createcluster failed: {res.stderr.strip()}")
            self.created = True
            state = "down"
        if state != "online":
            self._ctl("start")
            self.started = True

    def restart_immediate(self) -> float:
        """``restart -m immediate`` (a crash and recovery); returns how long it was down."""
        t0 = time.monotonic()
        self._ctl("restart", "-m", "immediate", check=False)
        if self.status() != "online":  # a failed start is retried once, as an operator would
            self._ctl("start", check=False)
        return time.monotonic() - t0

    def down(self) -> None:
        if self.created:
            log(f"dropping PostgreSQL cluster {PG_VERSION}/{self.name}")
            subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, self.name], capture_output=True, timeout=120)
        elif self.started:
            self._ctl("stop", check=False)


# ------------------------------------------------------------------------------ faults


@dataclass(order=True)
class Fault:
    at: float  # seconds after the load started
    kind: str  # kill-kafka | kill | pg-restart | pause
    target: str = ""
    duration: float = 0.0


def schedule(seed: int, seconds: float, apps: list[str], others: list[str] = []) -> list[Fault]:  # noqa: B006
    """The faults of one run, drawn from ``seed``. Counts are those of issue 13 at 5 minutes, scaled."""
    rng = random.Random(seed)
    scale = seconds / 300.0
    lo, hi = 5.0, max(10.0, seconds - 10.0)
    faults: list[Fault] = []
    for _ in range(max(1, math.ceil(11 * scale))):
        faults.append(Fault(rng.uniform(lo, hi), "kill-kafka", "kafka"))
    # every consumer function and every sidecar at least once (at full length), tasks-api's app twice
    procs = [f"{a}-{k}" for a in apps for k in ("app", "daprd")] + ["tasks-api-app", "tasks-api-app", *others]
    rng.shuffle(procs)
    n_kills = max(3, math.ceil(len(procs) * scale))
    for name in procs[:n_kills]:
        faults.append(Fault(rng.uniform(lo, hi), "kill", name))
    for _ in range(max(1, math.ceil(6 * scale))):
        faults.append(Fault(rng.uniform(lo, hi), "pg-restart", "postgresql"))
    pause = 65.0 if seconds >= 200 else max(12.0, seconds / 5)  # > Dapr's 60 s delivery timeout at full length
    targets = ["audit-app", "notifier-daprd"]
    for i in range(max(1, math.ceil(2 * scale))):
        faults.append(Fault(rng.uniform(lo, max(lo + 1, hi - pause)), "pause", targets[i % 2], pause))
    return sorted(faults)


def _kind(f: Fault) -> str:
    if f.kind == "kill-kafka":
        return "kill -9 Kafka broker"
    if f.target.startswith("tasks-api-app"):
        return "kill -9 tasks-api (during writes)"
    if f.target.endswith("-daprd"):
        return "kill -9 a daprd sidecar"
    if not f.target.endswith("-app"):
        return f"kill -9 {f.target}"
    return "kill -9 a consumer function"


@dataclass(eq=False)
class Injector(threading.Thread):
    stack: object
    pg: PgCluster
    faults: list[Fault]
    t0: float
    stop_event: threading.Event
    done: Counter[str] = field(default_factory=Counter)
    db_down: list[tuple[float, float]] = field(default_factory=list)  # (from, to) wall-clock windows
    paused: dict[int, str] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    pg_lock: threading.Lock = field(default_factory=threading.Lock)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="faults", daemon=True)

    def _proc(self, name: str, wait: float = 30.0) -> object | None:
        """The current process ``name`` once it runs (it may be restarting after an earlier fault)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self.stop_event.is_set():
            p = self.stack.processes().get(name)  # type: ignore[attr-defined]
            if p is not None and p.alive():
                return p
            time.sleep(0.2)
        return None

    def run(self) -> None:
        for f in self.faults:
            while time.monotonic() < self.t0 + f.at:
                if self.stop_event.wait(0.1):
                    return
            # each fault on its own thread: a slow one (a PostgreSQL restart) does not delay the next
            t = threading.Thread(target=self._inject, args=(f,), name=f"fault-{f.kind}", daemon=True)
            t.start()
            self.threads.append(t)

    def _inject(self, f: Fault) -> None:
        try:
            self.inject(f)
        except Exception as e:
            log(f"fault {f.kind} {f.target} not injected: {e}")

    def inject(self, f: Fault) -> None:
        if f.kind == "pg-restart":
            start = time.time()
            with self.pg_lock:
                down = self.pg.restart_immediate()
            with self.lock:
                self.db_down.append((start, time.time()))
                self.done["PostgreSQL restart -m immediate"] += 1
            log(f"fault: PostgreSQL restart -m immediate ({down:.1f}s)")
            return
        p = self._proc(f.target)
        if p is None:
            log(f"fault: {f.target} is not running; skipped")
            return
        pid = p.popen.pid  # type: ignore[attr-defined]
        if f.kind in ("kill-kafka", "kill"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with self.lock:
                self.done[_kind(f)] += 1
            log(f"fault: kill -9 {f.target} (pid {pid})")
        elif f.kind == "pause":
            os.killpg(pid, signal.SIGSTOP)
            with self.lock:
                self.paused[pid] = f.target
            log(f"fault: SIGSTOP {f.target} (pid {pid}) for {f.duration:.0f}s")
            threading.Timer(f.duration, self.resume, (pid,)).start()
            with self.lock:
                self.done[f"SIGSTOP {f.duration:.0f}s {f.target}"] += 1

    def resume(self, pid: int) -> None:
        with self.lock:
            name = self.paused.pop(pid, None)
        if name is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
            log(f"SIGCONT {name} (pid {pid})")

    def resume_all(self) -> None:
        for pid in list(self.paused):
            self.resume(pid)


# ------------------------------------------------------------------------------ the run


def table(title: str, rows: list[tuple[str, object]]) -> str:
    width = max([len(k) for k, _ in rows] + [len(title)])
    lines = [title, "-" * (width + 12)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from stack import Stack

    seconds = args.minutes * 60
    kafka_node.configure(
        port=args.kafka_port,
        controller_port=args.kafka_port + 1,
        pod_port=args.kafka_port + 2,
        run_dir=CHAOS / "kafka",
    )
    for port in (args.kafka_port, args.kafka_port + 1):
        if kafka_node._port_open(port) and not kafka_node.is_running():
            raise RuntimeError(f"port {port} is taken by another process: pick --kafka-port")
    if not kafka_node.is_running():
        kafka_node.reset()  # a fresh broker: no dead letter or offset from an earlier run
    pg = PgCluster(args.pg_cluster, args.pg_port)
    os.environ.update(
        {
            "TASKFLOW_JWT_SECRET": secrets.token_urlsafe(32),
            "TASKFLOW_FANOUT_INTERVAL": "1",
            "TASKFLOW_REMINDER_INTERVAL": "2",
            "TASKFLOW_WEBHOOK_BASE_URL": f"http://127.0.0.1:{args.hook_port}",
        }
    )
    stack = Stack(
        port=args.port,
        dapr_http_base=args.dapr_http_base,
        dapr_grpc_base=args.dapr_grpc_base,
        metrics_base=args.metrics_base,
        database="taskflow_chaos",
        fresh_database=True,
        pg_cluster=args.pg_cluster,
        pg_port=args.pg_port,
        run_bootstrap=not args.no_bootstrap,
        run_dir=CHAOS / "run",
        otlp_grpc_port=args.port + 90,
        otlp_http_port=args.port + 91,
        collector_prometheus_port=args.port + 92,
        moto_port=args.port + 93,  # the suite's own S3 stand-in, like its own broker and cluster
    )
    receiver = Receiver(args.hook_port, lambda: json.loads(stack.secrets_file.read_text())["webhook-signing-key"])
    stop = threading.Event()
    injector: Injector | None = None
    workers: list[Worker] = []
    try:
        pg.up()
        receiver.start()
        stack.start()
        db = create_engine(json.loads(stack.secrets_file.read_text())["database-url"], pool_pre_ping=True)
        record = Record()
        t0 = time.monotonic()
        end_wall = time.time() + seconds
        others = [n for n in stack.processes() if n not in ("kafka",) and not n.endswith(("-app", "-daprd"))]
        faults = schedule(args.seed, seconds, list(stack.apps), others)
        log(f"load: {args.workers} users for {seconds:.0f}s, seed {args.seed}, {len(faults)} faults scheduled")
        workers = [
            Worker(i, stack.api_url, os.environ["TASKFLOW_JWT_SECRET"], receiver.base_url, args.seed, record, stop,
                   reminders_until=end_wall - 5)
            for i in range(args.workers)
        ]  # fmt: skip
        for w in workers:
            w.start()
        injector = Injector(stack, pg, faults, t0, stop)
        injector.start()
        while time.monotonic() < t0 + seconds:
            time.sleep(1)
            broken = [w for w in workers if w.error is not None]
            if broken:
                raise RuntimeError(f"load client {broken[0].name} failed: {broken[0].error!r}")
        stop.set()
        injector.join(timeout=30)
        for t in injector.threads:
            t.join(timeout=60)
        injector.resume_all()
        for w in workers:
            w.join(timeout=180)
        load_end = time.monotonic()
        log("load stopped; draining")
        left: dict[str, int] = {}
        said = 0.0
        while time.monotonic() < load_end + args.drain:
            left = chaos_invariants.pending(db, receiver)
            if not any(left.values()):
                break
            if time.monotonic() - said > 10:
                log("still owed: " + ", ".join(f"{k} {n}" for k, n in left.items() if n))
                said = time.monotonic()
            time.sleep(2)
        drain = time.monotonic() - load_end
        log(f"drained in {drain:.0f}s" if not any(left.values()) else f"not drained after {drain:.0f}s: {left}")
        dead = {t: kafka_node.consume(t, timeout=5) for t in ("task-events-dlq", "reminders-dlq")}
        rng = random.Random(args.seed)
        sample = rng.sample(sorted(record.tasks), min(40, len(record.tasks)))
        verdict = chaos_invariants.check(db, record, receiver, stack.api_url, dead, sample)
        db.dispose()
    except Exception as e:
        log(f"ERROR: {e}")
        return 2
    finally:
        stop.set()
        if injector is not None:
            injector.resume_all()
        restarts = stack.supervisor.restarts
        stack.stop()
        receiver.stop()
        pg.down()
        if not kafka_node.is_running():
            pass

    errors = [w for w in workers if w.error is not None]
    for w in errors:
        verdict.violations.append(f"load client {w.name} failed: {w.error!r}")
    rows: list[tuple[str, object]] = [("seed", args.seed), ("load (s)", f"{seconds:.0f}"), ("users", args.workers)]
    rows += [(f"fault: {k}", n) for k, n in sorted(injector.done.items())] if injector else []
    rows += [("stack restarts (supervisor)", sum(restarts.values()))]
    rows += [(f"requests: {k}", n) for k, n in sorted(record.statuses.items())]
    rows += [(f"acknowledged: {k}", n) for k, n in sorted(record.ops.items())]
    rows += list(verdict.figures.items())
    rows += [("lost", verdict.lost), ("duplicated", verdict.duplicated), ("time to drain (s)", f"{drain:.0f}")]
    rows += [("violations", len(verdict.violations))]
    print()
    print(table(f"chaos run: {args.minutes:g} min, seed {args.seed}", rows), flush=True)
    if verdict.violations:
        print("\nVIOLATIONS:")
        for line in verdict.violations[:200]:
            print(f"  - {line}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="how long the load and the faults run (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="draws the fault schedule and the load (default 1)")
    ap.add_argument("--workers", type=int, default=4, help="concurrent users writing (default 4)")
    ap.add_argument("--drain", type=float, default=240.0, help="longest wait for the stack to catch up (s)")
    ap.add_argument("--port", type=int, default=18400, help="tasks-api's port; the other functions follow")
    ap.add_argument("--dapr-http-base", type=int, default=13400)
    ap.add_argument("--dapr-grpc-base", type=int, default=13450)
    ap.add_argument("--metrics-base", type=int, default=19400)
    ap.add_argument("--hook-port", type=int, default=18499, help="the webhook receiver's port")
    ap.add_argument("--kafka-port", type=int, default=19092, help="the suite's own broker (controller +1, pods +2)")
    ap.add_argument("--pg-cluster", default="chaos", help="the suite's own PostgreSQL cluster (created if missing)")
    ap.add_argument("--pg-port", type=int, default=15433)
    ap.add_argument("--no-bootstrap", action="store_true", help="skip tools/bootstrap.py")
    args = ap.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
