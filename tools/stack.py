#!/usr/bin/env python3
"""The local stack: real PostgreSQL, real Kafka (KRaft), one real daprd per function.

    python tools/stack.py up                 # foreground; Ctrl-C / SIGTERM stops everything
    python tools/stack.py up --functions-dir /tmp/fakefns --no-migrate
    python tools/stack.py render             # only render dapr/ into .cache/run/dapr/
    python tools/stack.py down               # stop a Kafka left running by `kafka_node.py start`

From Python (tests)::

    sys.path.insert(0, "tools"); from stack import Stack
    with Stack() as s:                       # start() ... stop()
        httpx.get(s.api_url + "/healthz")
        s.apps["audit"].dapr_http_url        # the audit sidecar's HTTP API

Order of ``start()``: bootstrap (daprd, helm, Kafka jars) -> PostgreSQL (``pg_ctlcluster 15 main
start``, role + database ``taskflow`` with a generated password) -> Kafka + topics -> migrations
(``python -m taskflow.cli migrate`` with TASKFLOW_DATABASE_URL for that process only) -> secrets file +
rendered Dapr resources -> the OpenTelemetry Collector (tools/otelcol.py; spans and metrics of every
function and daprd as JSON lines in ``.cache/run/telemetry/{traces,metrics}.jsonl``) -> the seven
functions (``functions-framework``) and their sidecars -> wait for every ``/v1.0/healthz`` and app
``/healthz`` -> a probe event through every subscription (``tools/pipeline_probe.py``): ready means
events flow. Logs: ``.cache/run/logs/<app>-{app,daprd}.log`` (the functions' as JSON lines), ``otelcol.log``.
Secret values are written to a 0600 file and never printed.

Supervised: once up, a process of the stack that dies (a function, a daprd, the Kafka broker it
started, the PostgreSQL cluster it started) is started again with the same ports after a backoff
(0.5 s doubling to 15 s), and each exit and restart is logged, as a kubelet restarts a crashed
container. ``Stack.supervisor.restarts`` counts them. ``supervise=False`` (``up --no-supervise``)
stops the whole stack instead when one process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from taskflow import functions as catalogue  # noqa: E402

import bootstrap  # noqa: E402
import kafka_node  # noqa: E402
import moto_node  # noqa: E402
import otelcol  # noqa: E402
import pipeline_probe  # noqa: E402
import procs  # noqa: E402
from procs import Proc, Supervised, Supervisor  # noqa: E402

REPO = TOOLS.parent
CACHE = REPO / ".cache"
RUN = CACHE / "run"
LOGS = RUN / "logs"
DAPR_SRC = REPO / "dapr"
DAPR_RUN = RUN / "dapr"
RESOURCES = DAPR_RUN / "resources"
CONFIG = DAPR_RUN / "config.yaml"
SECRETS_FILE = DAPR_RUN / "secrets.json"
# where taskflow-secrets reads from: the local file (dapr/secretstore.yaml) or AWS Secrets Manager,
# moto's in the stack (dapr/secretstores/aws-secretmanager.yaml, rendered over secretstore.yaml)
SECRET_STORES = {"file": None, "aws": DAPR_SRC / "secretstores" / "aws-secretmanager.yaml"}
DAPRD = bootstrap.DAPRD

PG_VERSION = os.environ.get("TASKFLOW_PG_VERSION", "15")
PG_CLUSTER = os.environ.get("TASKFLOW_PG_CLUSTER", "main")
PG_HOST = "127.0.0.1"
PG_PORT = int(os.environ.get("TASKFLOW_PG_PORT", "5432"))
PG_DB = "taskflow"
AUDIT_ENDPOINT = "audit-sidecar"  # the HTTPEndpoint tasks-api invokes for history (Stack._audit_endpoint)
PG_USER = "taskflow"


@dataclass(frozen=True)
class FunctionSpec:
    folder: str  # functions/<folder>/main.py, target = folder
    app_id: str
    index: int  # port offset


FUNCTIONS: list[FunctionSpec] = [FunctionSpec(f.folder, f.app_id, i) for i, f in enumerate(catalogue.FUNCTIONS)]


class StackError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


_port_open = procs.port_open
_http_status = procs.http_status


def _venv_bin(name: str) -> str:
    for cand in (REPO / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if cand.exists():
            return str(cand)
    found = shutil.which(name)
    if not found:
        raise StackError(f"'{name}' not found (looked in .venv/bin, next to {sys.executable}, and on PATH)")
    return found


# ------------------------------------------------------------------------------ rendering

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def render_text(text: str, env: dict[str, str]) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; an unset VAR without default is an error."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        val = env.get(name)
        if val is None or val == "":
            if default is None:
                raise StackError(f"dapr template needs ${{{name}}} and it is not set")
            return default
        return val

    return _PLACEHOLDER.sub(sub, text)


def render_dapr(env: dict[str, str], src: Path = DAPR_SRC, dest: Path = DAPR_RUN) -> tuple[Path, Path]:
    """Render ``dapr/*.yaml`` into ``dest/resources`` (+ ``dest/config.yaml``). Returns both paths."""
    resources = dest / "resources"
    if resources.exists():
        shutil.rmtree(resources)
    resources.mkdir(parents=True)
    config = dest / "config.yaml"
    for f in sorted(src.glob("*.yaml")):
        text = render_text(f.read_text(), env)
        if re.search(r"^kind:\s*Configuration\s*$", text, re.M):
            config.write_text(text)
        else:
            (resources / f.name).write_text(text)
    if not config.exists():
        raise StackError(f"no Configuration in {src}")
    return resources, config


# ------------------------------------------------------------------------------ processes


@dataclass
class App:
    spec: FunctionSpec
    app_port: int
    dapr_http_port: int
    dapr_grpc_port: int
    metrics_port: int
    app: Proc | None = None
    daprd: Proc | None = None

    @property
    def app_id(self) -> str:
        return self.spec.app_id

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def dapr_http_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"


@dataclass
class Stack(procs.Lifecycle):
    """The local stack as a context manager. All arguments are optional.

    functions_dir: where ``<folder>/main.py`` live (default: the repository's ``functions/``).
    only: app-ids to start (default: all seven).
    port: tasks-api's app port (default ``$PORT`` or 8080); other apps use port+1.. port+5.
    dapr_http_base / dapr_grpc_base / metrics_base: first sidecar ports (3500, 3550, 9190).
    app_metrics_base: first function's own Prometheus endpoint (9464; TASKFLOW_METRICS_PORT of each).
    telemetry: run the OpenTelemetry Collector (tools/otelcol.py) that every function and daprd
        exports spans and metrics to; it writes them under ``run_dir/telemetry/`` (default True).
    otlp_grpc_port / otlp_http_port / collector_prometheus_port: the collector's ports (4317, 4318, 8889).
    migrate: run ``python -m taskflow.cli migrate`` (default True).
    database: the PostgreSQL database (default ``taskflow``; owned by the role ``taskflow``).
    fresh_database: drop and recreate ``database`` first, so nothing from an earlier run is left
        (pending outbox rows, reminders, idempotency records); the end-to-end tests use this.
    stop_kafka: stop Kafka on ``stop()`` if this stack started it (default True).
    supervise: restart any process that dies, with backoff (default True).
    pg_cluster / pg_port: the host's PostgreSQL cluster (``$TASKFLOW_PG_CLUSTER``/``$TASKFLOW_PG_PORT``,
        default ``main`` on 5432); the stack starts it when it is down and then supervises it.
    secret_store: where every daprd's ``taskflow-secrets`` reads the secrets from: ``file`` (the
        stack's 0600 JSON file, ``secretstores.local.file``) or ``aws`` (moto's Secrets Manager through
        ``secretstores.aws.secretmanager``; the stack puts each key there after moto starts and again
        after moto restarts, and gives only the daprd processes AWS credentials).
    extra_env: added to every function's environment.
    run_dir: where the rendered Dapr resources, the secrets file and the logs go (default ``.cache/run``).
    """

    functions_dir: Path = REPO / "functions"
    only: list[str] | None = None
    port: int = field(default_factory=lambda: int(os.environ.get("PORT", "8080")))
    dapr_http_base: int = 3500
    # not Dapr's usual 50001: 50001-50006 lie in Linux's ephemeral port range (32768-60999), and an
    # outgoing connection holding one of them made daprd fail with "bind: address already in use"
    dapr_grpc_base: int = 3550
    metrics_base: int = 9190
    app_metrics_base: int = 9464
    telemetry: bool = True
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    collector_prometheus_port: int = 8889
    moto_port: int = field(default_factory=lambda: moto_node.DEFAULT_PORT)
    migrate: bool = True
    database: str = PG_DB
    fresh_database: bool = False
    stop_kafka: bool = True
    supervise: bool = True
    pg_cluster: str = PG_CLUSTER
    pg_port: int = PG_PORT
    run_bootstrap: bool = True
    secret_store: str = "file"
    extra_env: dict[str, str] = field(default_factory=dict)
    run_dir: Path = RUN
    log_level: str = "info"
    startup_timeout: float = 120.0

    apps: dict[str, App] = field(default_factory=dict, init=False)
    app_api_token: str = field(default="", init=False)
    supervisor: Supervisor = field(default_factory=lambda: Supervisor(log=log), init=False)
    kafka: Proc | None = field(default=None, init=False)
    collector: Proc | None = field(default=None, init=False)
    helpers: dict[str, tuple[Callable[[], Proc], Proc]] = field(default_factory=dict, init=False)
    aws: moto_node.Credentials = field(default_factory=moto_node.Credentials.generate, init=False)
    _secret_values: dict[str, str] = field(default_factory=dict, init=False)
    _kafka_started: bool = field(default=False, init=False)
    _pg_started: bool = field(default=False, init=False)
    _started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.functions_dir = Path(self.functions_dir).resolve()

    # ---- public

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def dapr_run(self) -> Path:
        return self.run_dir / "dapr"

    @property
    def secrets_file(self) -> Path:
        return self.dapr_run / "secrets.json"

    @property
    def telemetry_dir(self) -> Path:
        """Where the collector writes ``traces.jsonl`` and ``metrics.jsonl``."""
        return self.run_dir / "telemetry"

    @property
    def collector_ports(self) -> otelcol.Ports:
        return otelcol.Ports(self.otlp_grpc_port, self.otlp_http_port, self.collector_prometheus_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self, seconds: float) -> None:
        if self.supervise:
            self._supervise()
        supervised = " (supervised: a process that exits is restarted)" if self.supervise else ""
        log(f"stack up in {seconds:.0f}s{supervised}")

    def add_process(self, name: str, launch: Callable[[], Proc]) -> Proc:
        """Start one more process of the stack (a collector, an S3 stand-in) from ``_start()``.

        ``launch`` starts it, and starts it again after a crash when the stack is supervised (same
        command, same ports); the process is listed by ``processes()`` and stopped after the
        functions, before Kafka.
        """
        proc = launch()
        self.helpers[name] = (launch, proc)
        return proc

    def stop(self) -> None:
        self.supervisor.close()  # nothing restarts while we stop
        # sidecars first (they stop delivering), then apps, then the helper processes, then Kafka
        for kind in ("daprd", "app"):
            procs.stop([p for a in self.apps.values() if (p := getattr(a, kind)) is not None], timeout=15, log=log)
            for a in self.apps.values():
                setattr(a, kind, None)
        procs.stop([self.processes()[n] for n in self.helpers], timeout=15, log=log)
        self.helpers.clear()
        if self.collector is not None:  # after the apps and sidecars: their last exports land
            procs.stop([self.collector], timeout=10, log=log)
            self.collector = None
        if self._kafka_started and self.stop_kafka:
            kafka_node.stop()
            self._kafka_started = False
            self.kafka = None
        if self._started:
            log("stack stopped")
        self._started = False

    def restart_sidecar(self, app_id: str) -> None:
        """Fault injection: SIGKILL one function's daprd (a crash) and wait until it answers healthy again,
        restarted by the supervisor (by this call with ``supervise=False``) on the same ports. The
        function's own process keeps running throughout."""
        a = self.apps[app_id]
        name = f"{app_id}-daprd"
        before = self.supervisor.restarts.get(name, 0)
        if a.daprd is not None and a.daprd.alive():
            os.killpg(a.daprd.popen.pid, signal.SIGKILL)
        log(f"{name} killed (SIGKILL)")
        if not self.supervise:
            if a.daprd is not None:
                a.daprd.popen.wait(timeout=10)
            self._start_daprd(a, self.dapr_run / "resources", self.dapr_run / "config.yaml")
        deadline = time.monotonic() + self.startup_timeout
        while not (
            (not self.supervise or self.supervisor.restarts.get(name, 0) > before)
            and 200 <= _http_status(f"{a.dapr_http_url}/v1.0/healthz") < 300
        ):
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not come back (log: {self.logs / f'{name}.log'})")
            time.sleep(0.2)

    def check(self) -> list[str]:
        """Names of processes that have exited (and are not yet restarted)."""
        dead = []
        for a in self.apps.values():
            for p in (a.app, a.daprd):
                if p is not None and not p.alive():
                    dead.append(p.name)
        dead += [n for n, p in self.processes().items() if n in self.helpers and not p.alive()]
        if self.kafka is not None and not self.kafka.alive():
            dead.append("kafka")
        if self.collector is not None and not self.collector.alive():
            dead.append("otelcol")
        return dead

    def processes(self) -> dict[str, Proc]:
        """Every process of the stack by name (``<app-id>-app``, ``<app-id>-daprd``, ``kafka``), as now running."""
        out = {p.name: p for a in self.apps.values() for p in (a.app, a.daprd) if p is not None}
        for name, (_, proc) in self.helpers.items():
            item = self.supervisor.items.get(name)
            out[name] = item.proc if item is not None and item.proc is not None else proc
        if self.kafka is not None:
            out["kafka"] = self.kafka
        if self.collector is not None:
            out["otelcol"] = self.collector
        return out

    def _supervise(self) -> None:
        """Hand every process to the supervisor: each restart uses the same command and ports."""
        resources, config = self.dapr_run / "resources", self.dapr_run / "config.yaml"

        def relaunch(a: App, kind: str) -> Callable[[], Proc | None]:
            def launch() -> Proc | None:
                if kind == "app":
                    self._start_app(a)
                else:
                    self._start_daprd(a, resources, config)
                return getattr(a, kind)

            return launch

        for a in self.apps.values():
            for kind in ("app", "daprd"):
                self.supervisor.add(Supervised(f"{a.app_id}-{kind}", relaunch(a, kind), getattr(a, kind)))
        for name, (launch, proc) in self.helpers.items():
            self.supervisor.add(Supervised(name, launch, proc))
        if self.kafka is not None:

            def kafka() -> Proc:
                self.kafka = kafka_node.spawn()
                return self.kafka

            self.supervisor.add(Supervised("kafka", kafka, self.kafka))
        if self.collector is not None:

            def collector() -> Proc:
                self.collector = otelcol.spawn(self.run_dir, self.collector_ports, self.logs / "otelcol.log")
                return self.collector

            self.supervisor.add(Supervised("otelcol", collector, self.collector))
        if self._pg_started:
            port = self.pg_port
            self.supervisor.add(
                Supervised(
                    "postgresql",
                    lambda: start_postgres(self.pg_cluster, port) and None,
                    probe=lambda: _port_open(port),
                )
            )
        self.supervisor.run_in_background()

    # ---- steps

    def _start(self) -> None:
        if self.secret_store not in SECRET_STORES:
            raise StackError(f"secret_store={self.secret_store!r}: use one of {', '.join(SECRET_STORES)}")
        specs = [f for f in FUNCTIONS if self.only is None or f.app_id in self.only]
        if not specs:
            raise StackError(f"no function selected by only={self.only}")
        self.apps = {
            f.app_id: App(
                f,
                self.port + f.index,
                self.dapr_http_base + f.index,
                self.dapr_grpc_base + f.index,
                self.metrics_base + f.index,
            )
            for f in specs
        }
        busy = [
            f"{a.app_id}:{p}"
            for a in self.apps.values()
            for p in (a.app_port, a.dapr_http_port, a.dapr_grpc_port, a.metrics_port, self._app_metrics_port(a))
            if _port_open(p)
        ]
        if self.telemetry:
            busy += [f"otelcol:{p}" for p in self.collector_ports.all() if _port_open(p)]
        if _port_open(self.moto_port):
            busy.append(f"moto:{self.moto_port}")
        if busy:
            raise StackError(f"ports already in use: {', '.join(busy)} (another stack running? set PORT)")
        if self.run_bootstrap:
            bootstrap.bootstrap()
        secrets_ = self._secrets()
        self._secret_values = {k: v for k, v in secrets_.items() if not k.startswith("_")}
        self._postgres(secrets_["_pg_password"])
        if not kafka_node.is_running() and not _port_open(kafka_node.PORT):
            self._kafka_started = True
            self.kafka = kafka_node.spawn()
            kafka_node.wait_ready(90, self.kafka.popen)
            kafka_node.ensure_topics()
        else:
            kafka_node.start()
        if self.migrate:
            self._migrate(secrets_["database-url"])
        render_env = {
            **os.environ,
            "TASKFLOW_SECRETS_FILE": str(self.secrets_file),
            "TASKFLOW_KAFKA_BROKERS": kafka_node.BOOTSTRAP,
            "TASKFLOW_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.otlp_grpc_port}",
            "TASKFLOW_TRACE_SAMPLING": "1" if self.telemetry else "0",
            "TASKFLOW_AWS_ENDPOINT": moto_node.endpoint(self.moto_port),
            "TASKFLOW_AWS_REGION": moto_node.REGION,
            "TASKFLOW_S3_BUCKET": moto_node.BUCKET,
        }
        resources, config = render_dapr(render_env, dest=self.dapr_run)
        store = SECRET_STORES[self.secret_store]
        if store is not None:
            (resources / "secretstore.yaml").write_text(render_text(store.read_text(), render_env))
        self._audit_endpoint(resources)
        log(f"rendered Dapr resources into {resources}")
        self.app_api_token = secrets.token_urlsafe(24)
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.telemetry:
            self._start_collector()
        self.add_process("moto", self._start_moto)  # restarted by the supervisor: bucket created again
        for a in self.apps.values():
            self._start_app(a)
        for a in self.apps.values():
            self._start_daprd(a, resources, config)
        self._wait_healthy()
        self._wait_pipeline(resources)
        self.print_topology()

    def _start_collector(self) -> None:
        t0 = time.monotonic()
        self.collector = otelcol.spawn(self.run_dir, self.collector_ports, self.logs / "otelcol.log", fresh=True)
        deadline = time.monotonic() + 30
        while not (_port_open(self.otlp_grpc_port) and _port_open(self.otlp_http_port)):
            if not self.collector.alive() or time.monotonic() > deadline:
                raise StackError(f"the OpenTelemetry Collector did not start:\n{self.collector.tail()}")
            time.sleep(0.2)
        log(f"OpenTelemetry Collector up in {time.monotonic() - t0:.1f}s (writing {self.telemetry_dir})")

    def _start_moto(self) -> Proc:
        """moto's S3 and Secrets Manager on loopback, with the bucket the binding writes to and (secret
        store ``aws``) every secret of the stack: moto keeps them in memory, so a restart puts them again."""
        t0 = time.monotonic()
        proc = moto_node.spawn(self.moto_port, self.logs / "moto.log")
        try:
            moto_node.wait_ready(self.moto_port, proc)
            moto_node.prepare(self.moto_port, self.aws, self._secret_values if self.secret_store == "aws" else None)
        except Exception as exc:
            # never leave it behind: a moto that binds later would hold the port after the stack stops
            procs.stop([proc], timeout=5, log=log)
            raise StackError(f"moto did not start: {exc}\n{proc.tail()}") from exc
        log(f"moto (S3) up on {moto_node.endpoint(self.moto_port)} in {time.monotonic() - t0:.1f}s")
        return proc

    def _app_metrics_port(self, a: App) -> int:
        return self.app_metrics_base + a.spec.index

    def _audit_endpoint(self, resources: Path) -> None:
        """tasks-api reaches audit (history) through an HTTPEndpoint at audit's own sidecar, not by
        mDNS: every local stack on a host registers the app-id ``audit``, and mDNS answered with
        another stack's audit (reading another database) when two ran at once."""
        if "audit" not in self.apps:
            return
        (resources / "audit-endpoint.yaml").write_text(
            f"""# generated by tools/stack.py: audit's sidecar, addressed by port (see Stack._audit_endpoint)
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: {AUDIT_ENDPOINT}
spec:
  baseUrl: http://127.0.0.1:{self.apps["audit"].dapr_http_port}/v1.0/invoke/audit/method
scopes:
  - tasks-api
"""
        )

    def _secrets(self) -> dict[str, str]:
        """Create (once) or update the local secrets file; returns its content."""
        self.dapr_run.mkdir(parents=True, exist_ok=True)
        data: dict[str, str] = {}
        if self.secrets_file.exists():
            try:
                data = json.loads(self.secrets_file.read_text())
            except ValueError:
                data = {}
        pw = data.get("_pg_password") or secrets.token_hex(16)
        data["_pg_password"] = pw
        data["database-url"] = f"postgresql+pg8000://{PG_USER}:{pw}@{PG_HOST}:{self.pg_port}/{self.database}"
        data["pg-connection-string"] = (
            f"host={PG_HOST} port={self.pg_port} user={PG_USER} password={pw} dbname={self.database} sslmode=disable"
        )
        data.setdefault("jwt-secret", secrets.token_urlsafe(32))
        if os.environ.get("TASKFLOW_JWT_SECRET"):
            data["jwt-secret"] = os.environ["TASKFLOW_JWT_SECRET"]
        data.setdefault("webhook-signing-key", secrets.token_urlsafe(32))
        data["s3-access-key"] = self.aws.access_key  # moto's S3: random per run (moto accepts any key)
        data["s3-secret-key"] = self.aws.secret_key
        tmp = self.secrets_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, self.secrets_file)
        os.chmod(self.secrets_file, 0o600)
        log(f"secrets in {self.secrets_file} (keys: {', '.join(k for k in data if not k.startswith('_'))})")
        return data

    def _postgres(self, password: str) -> None:
        self._pg_started = ensure_database(
            self.database, PG_USER, password, fresh=self.fresh_database, cluster=self.pg_cluster, port=self.pg_port
        )

    def _migrate(self, database_url: str) -> None:
        log("running migrations: python -m taskflow.cli migrate")
        env = {**os.environ, "TASKFLOW_DATABASE_URL": database_url, "TASKFLOW_MODE": "dapr"}
        res = subprocess.run(
            [_venv_bin("python"), "-m", "taskflow.cli", "migrate"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if res.returncode != 0:
            out = (res.stdout + res.stderr).replace(database_url, "***")
            raise StackError(f"migrations failed (exit {res.returncode}):\n{out[-3000:]}")

    def _app_env(self, a: App) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TASKFLOW_DATABASE_URL", "TASKFLOW_JWT_SECRET")}
        env.update(
            {
                "TASKFLOW_MODE": "dapr",
                "DAPR_HTTP_PORT": str(a.dapr_http_port),
                "DAPR_GRPC_PORT": str(a.dapr_grpc_port),
                "APP_API_TOKEN": self.app_api_token,
                "TASKFLOW_ALLOW_LOOPBACK_WEBHOOKS": "true",
                "TASKFLOW_WEBHOOK_BASE_URL": os.environ.get("TASKFLOW_WEBHOOK_BASE_URL", "http://127.0.0.1:8099"),
                "TASKFLOW_AUDIT_APP_ID": os.environ.get("TASKFLOW_AUDIT_APP_ID")
                or (AUDIT_ENDPOINT if "audit" in self.apps else "audit"),
                "PORT": str(a.app_port),
                "PYTHONUNBUFFERED": "1",
                "TASKFLOW_METRICS_PORT": str(self._app_metrics_port(a)),
            }
        )
        if self.telemetry:
            env.update(
                {
                    "OTEL_SERVICE_NAME": a.app_id,  # daprd's spans carry the app id as service.name too
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.otlp_http_port}",
                    "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                }
            )
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], logfile: Path) -> Proc:
        return procs.spawn(name, cmd, env, logfile, cwd=REPO)

    def _start_app(self, a: App) -> None:
        source = self.functions_dir / a.spec.folder / "main.py"
        if not source.exists():
            raise StackError(f"{source} does not exist")
        cmd = [
            _venv_bin("functions-framework"),
            "--source",
            str(source),
            "--target",
            a.spec.folder,
            "--host",
            "127.0.0.1",
            "--port",
            str(a.app_port),
        ]
        a.app = self._spawn(f"{a.app_id}-app", cmd, self._app_env(a), self.logs / f"{a.app_id}-app.log")

    def _start_daprd(self, a: App, resources: Path, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("TASKFLOW_DATABASE_URL", "TASKFLOW_JWT_SECRET")}
        env["APP_API_TOKEN"] = self.app_api_token
        if self.secret_store == "aws":  # the AWS SDK's default chain; the functions never see these
            env.update(self.aws.env())
        cmd = [
            str(DAPRD),
            "--app-id",
            a.app_id,
            "--app-port",
            str(a.app_port),
            "--app-channel-address",
            "127.0.0.1",
            "--app-protocol",
            "http",
            "--dapr-http-port",
            str(a.dapr_http_port),
            "--dapr-grpc-port",
            str(a.dapr_grpc_port),
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--metrics-port",
            str(a.metrics_port),
            "--resources-path",
            str(resources),
            "--config",
            str(config),
            "--disable-init-endpoints",
            "config,subscribe",
            "--log-level",
            self.log_level,
            "--dapr-graceful-shutdown-seconds",
            "5",
        ]
        a.daprd = self._spawn(f"{a.app_id}-daprd", cmd, env, self.logs / f"{a.app_id}-daprd.log")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = {f"{a.app_id}-app": f"{a.app_url}/healthz" for a in self.apps.values()}
        pending.update({f"{a.app_id}-daprd": f"{a.dapr_http_url}/v1.0/healthz" for a in self.apps.values()})
        log(f"waiting for {len(pending)} health checks")
        while pending:
            dead = self.check()
            if dead:
                procs = {p.name: p for a in self.apps.values() for p in (a.app, a.daprd) if p}
                details = "\n".join(f"--- {d} ({procs[d].log}):\n{procs[d].tail()}" for d in dead)
                raise StackError(f"exited during start: {', '.join(dead)}\n{details}")
            for name, url in list(pending.items()):
                if 200 <= _http_status(url) < 300:
                    del pending[name]
            if time.monotonic() > deadline:
                raise StackError(
                    f"not healthy after {self.startup_timeout:.0f}s: {', '.join(sorted(pending))} (logs in {self.logs})"
                )
            if pending:
                time.sleep(0.5)
        errors = self._component_errors()
        if errors:
            log("WARNING: daprd reported errors:\n  " + "\n  ".join(errors))

    def _wait_pipeline(self, resources: Path) -> None:
        """Ready means events flow: a probe event per topic has reached every subscriber's app
        (tools/pipeline_probe.py), not only healthy sidecars (their Kafka consumers join later)."""
        publisher = self.apps.get("tasks-api") or next(iter(self.apps.values()))
        if publisher.app_id == "tasks-api":  # its /readyz opens the database and sidecar connections
            _http_status(f"{publisher.app_url}/readyz", timeout=30)
        metrics = {a.app_id: f"http://127.0.0.1:{a.metrics_port}/metrics" for a in self.apps.values()}
        try:
            took = pipeline_probe.wait_live(publisher.dapr_http_url, metrics, resources, self.startup_timeout, log)
        except TimeoutError as exc:
            raise StackError(f"{exc} (logs in {self.logs})") from exc
        log(f"event pipeline live: a probe event reached every subscriber in {took:.1f}s")

    def _component_errors(self) -> list[str]:
        out = []
        for a in self.apps.values():
            if a.daprd is None:
                continue
            for line in a.daprd.new_output().splitlines():
                if "level=error" in line or "level=fatal" in line:
                    out.append(f"{a.app_id}: {line[:300]}")
        return out

    def print_topology(self) -> None:
        rows = [("app-id", "function", "app", "dapr http", "dapr grpc", "daprd metrics", "app metrics", "logs")]
        for a in self.apps.values():
            rows.append(
                (
                    a.app_id,
                    a.spec.folder,
                    str(a.app_port),
                    str(a.dapr_http_port),
                    str(a.dapr_grpc_port),
                    str(a.metrics_port),
                    str(self._app_metrics_port(a)),
                    f"{self.logs}/{a.app_id}-{{app,daprd}}.log",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        print("\n".join(lines), flush=True)
        print(f"\nAPI:        {self.api_url}  (tasks-api)", flush=True)
        print(f"Kafka:      {kafka_node.BOOTSTRAP}  topics {', '.join(kafka_node.TOPICS)}", flush=True)
        pg = f"{PG_HOST}:{self.pg_port}/{self.database}"
        print(f"PostgreSQL: {pg} (user {PG_USER}; password in {self.secrets_file})", flush=True)
        print(
            f"Dapr:       resources {self.dapr_run / 'resources'}, config {self.dapr_run / 'config.yaml'}", flush=True
        )
        if "moto" in self.helpers:
            print(
                f"moto:       {moto_node.endpoint(self.moto_port)} (S3 bucket {moto_node.BUCKET}); "
                f"log {self.logs / 'moto.log'}",
                flush=True,
            )
        where = (
            f"AWS Secrets Manager (moto, {moto_node.endpoint(self.moto_port)})"
            if self.secret_store == "aws"
            else f"local file {self.secrets_file}"
        )
        print(f"Secrets:    taskflow-secrets from {where}", flush=True)
        if self.collector is not None:
            p = self.collector_ports
            print(
                f"Telemetry:  OTLP 127.0.0.1:{p.otlp_grpc} (gRPC) / :{p.otlp_http} (HTTP); spans and metrics in "
                f"{self.telemetry_dir}/{{{otelcol.TRACES_FILE},{otelcol.METRICS_FILE}}}; "
                f"Prometheus text http://127.0.0.1:{p.prometheus}/metrics",
                flush=True,
            )


def start_postgres(cluster: str = PG_CLUSTER, port: int = PG_PORT) -> bool:
    """Start the host's PostgreSQL cluster (``pg_ctlcluster``) unless something listens on its port.
    Returns whether it started it."""
    if _port_open(port):
        return False
    if not shutil.which("pg_ctlcluster"):
        raise StackError(f"PostgreSQL is not listening on {port} and pg_ctlcluster is not installed")
    log(f"starting PostgreSQL {PG_VERSION}/{cluster}")
    res = subprocess.run(["pg_ctlcluster", PG_VERSION, cluster, "start"], capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"pg_ctlcluster {PG_VERSION} {cluster} start failed: {res.stderr.strip()}")
    for _ in range(60):
        if _port_open(port):
            return True
        time.sleep(0.5)
    raise StackError(f"PostgreSQL did not open port {port}")


def ensure_database(
    db: str, user: str, password: str, fresh: bool = False, cluster: str = PG_CLUSTER, port: int = PG_PORT
) -> bool:
    """Start PostgreSQL if needed; create (or re-password) ``user`` and create ``db`` owned by it.

    ``fresh`` drops ``db`` first. The password goes in through psql's stdin and is never echoed.
    Returns whether it started PostgreSQL.
    """
    started = start_postgres(cluster, port)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", db) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", user):
        raise StackError(f"database/role name {db!r}/{user!r}: use lower-case letters, digits and '_'")
    drop = f"DROP DATABASE IF EXISTS {db} WITH (FORCE);\n" if fresh else ""
    sql = f"""
\\set ON_ERROR_STOP on
SELECT format('CREATE ROLE {user} LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') \\gexec
SELECT format('ALTER ROLE {user} LOGIN PASSWORD %L', :'pw') \\gexec
{drop}SELECT 'CREATE DATABASE {db} OWNER {user}'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{db}') \\gexec
"""
    cmd = ["psql", "-X", "-q", "-d", "postgres", "-p", str(port), "-v", f"pw={password}"]
    if os.geteuid() == 0:
        cmd = ["su", "postgres", "-c", " ".join(_shq(c) for c in cmd)]
    res = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"creating role/database {db} failed: {res.stderr.replace(password, '***').strip()}")
    log(f"PostgreSQL ready on {PG_HOST}:{port}, database {db}" + (" (recreated empty)" if drop else ""))
    return started


def _shq(s: str) -> str:
    import shlex

    return shlex.quote(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything in the foreground")
    up.add_argument("--functions-dir", type=Path, default=REPO / "functions")
    up.add_argument("--only", action="append", help="app-id to start (repeatable); default all seven")
    up.add_argument("--no-migrate", action="store_true", help="skip python -m taskflow.cli migrate")
    up.add_argument("--no-bootstrap", action="store_true", help="skip tools/bootstrap.py")
    up.add_argument("--keep-kafka", action="store_true", help="leave Kafka running on exit")
    up.add_argument("--no-supervise", action="store_true", help="stop everything when one process exits")
    up.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="tasks-api's port ($PORT)")
    up.add_argument("--dapr-http-base", type=int, default=3500, help="first daprd HTTP port")
    up.add_argument("--dapr-grpc-base", type=int, default=3550, help="first daprd gRPC port")
    up.add_argument("--metrics-base", type=int, default=9190, help="first daprd metrics port")
    up.add_argument("--app-metrics-base", type=int, default=9464, help="first function's /metrics port")
    up.add_argument("--no-telemetry", action="store_true", help="no OpenTelemetry Collector, Dapr tracing off")
    up.add_argument("--otlp-grpc-port", type=int, default=4317, help="the collector's OTLP/gRPC port")
    up.add_argument("--otlp-http-port", type=int, default=4318, help="the collector's OTLP/HTTP port")
    up.add_argument("--collector-prometheus-port", type=int, default=8889, help="the collector's /metrics port")
    up.add_argument("--database", default=PG_DB, help="PostgreSQL database (owned by the role taskflow)")
    up.add_argument("--log-level", default="info")
    up.add_argument(
        "--secret-store",
        choices=sorted(SECRET_STORES),
        default="file",
        help="where daprd reads the secrets: the local file or AWS Secrets Manager (moto's)",
    )
    sub.add_parser("render", help="render dapr/ into .cache/run/dapr/ and exit")
    sub.add_parser("down", help="stop the Kafka broker started by kafka_node.py")
    args = ap.parse_args(argv)

    if args.cmd == "render":
        env = {**os.environ, "TASKFLOW_SECRETS_FILE": str(SECRETS_FILE)}
        resources, config = render_dapr(env)
        print(f"{resources}\n{config}")
        return 0
    if args.cmd == "down":
        kafka_node.stop()
        return 0

    stack = Stack(
        functions_dir=args.functions_dir,
        only=args.only,
        migrate=not args.no_migrate,
        run_bootstrap=not args.no_bootstrap,
        stop_kafka=not args.keep_kafka,
        supervise=not args.no_supervise,
        log_level=args.log_level,
        port=args.port,
        dapr_http_base=args.dapr_http_base,
        dapr_grpc_base=args.dapr_grpc_base,
        metrics_base=args.metrics_base,
        app_metrics_base=args.app_metrics_base,
        telemetry=not args.no_telemetry,
        otlp_grpc_port=args.otlp_grpc_port,
        otlp_http_port=args.otlp_http_port,
        collector_prometheus_port=args.collector_prometheus_port,
        database=args.database,
        secret_store=args.secret_store,
    )
    return procs.foreground(
        stack,
        "stack",
        (StackError, bootstrap.BootstrapError, kafka_node.KafkaError),
        lambda: [] if stack.supervise else stack.check(),
        "running; Ctrl-C to stop",
        stack.logs,
        log,
    )


if __name__ == "__main__":
    sys.exit(main())
