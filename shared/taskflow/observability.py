"""Process-wide logs, traces and metrics of the functions (OpenTelemetry SDK, Prometheus, JSON logs).

- Logs: one line per record on stderr; ``TASKFLOW_LOG_FORMAT=json`` (the default in ``dapr`` mode)
  writes one JSON object per line with ``app``, ``trace_id`` and ``span_id``.
- Traces: a request continues the ``traceparent`` it arrives with, or starts a trace; its answer
  carries ``traceresponse``. Spans go to an OTLP collector when ``OTEL_EXPORTER_OTLP_ENDPOINT``
  (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set. Without one, spans are not recorded (they
  would go nowhere): trace ids are still made, answered and logged, and a caller's sampled
  ``traceparent`` is still honoured; ``OTEL_TRACES_SAMPLER`` overrides that choice.
- Metrics: Prometheus text on ``127.0.0.1:TASKFLOW_METRICS_PORT`` (``serve_metrics``), and OTLP
  push when an endpoint is set. ``TASKFLOW_TELEMETRY=off`` switches traces and metrics off.
- Shutdown: the last spans and metrics are pushed at exit, within
  ``TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS`` (default 2): an unreachable collector cannot hold a
  stopping process for the exporters' own 10 s timeout and retries.

The SDK is set up at a function's first request (``served``), never at import (cold start).
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskflow import telemetry

log = logging.getLogger("taskflow.observability")

DEFAULT_METRICS_PORT = 9464
DEFAULT_SHUTDOWN_SECONDS = 2.0
_setup_lock = threading.Lock()
_setup_done = False
_enabled = True
_metrics_server: Any = None
#: What ``shutdown`` flushes and stops: the providers, and the OTLP exporters (to abort their retries).
_sdk: dict[str, Any] = {}


# --- logs ----------------------------------------------------------------------------------


class _ContextFilter(logging.Filter):
    """Adds ``app``, ``trace_id`` and ``span_id`` to every record (empty outside a trace)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.app = telemetry.current_app.get()
        if getattr(record, "trace_id", ""):
            return True  # the caller named the trace (work done outside the request's context)
        record.trace_id = record.span_id = ""
        if "opentelemetry.trace" in sys.modules:  # nothing to read before the first traced request
            from opentelemetry import trace

            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                record.trace_id = f"{ctx.trace_id:032x}"
                record.span_id = f"{ctx.span_id:016x}"
        return True


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(app)s %(trace_id)s %(span_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def log_handler(fmt: str, stream: Any = None) -> logging.Handler:
    """A handler writing ``fmt`` (``json`` or ``text``) lines with the trace context fields."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(app)s %(trace_id)s]: %(message)s")
        )
    handler.addFilter(_ContextFilter())
    return handler


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """Idempotent; safe at import time (no I/O beyond stderr). JSON in ``dapr`` mode unless
    ``TASKFLOW_LOG_FORMAT=text``; text in embedded mode unless ``TASKFLOW_LOG_FORMAT=json``.
    A host that already logs (pytest, a WSGI server) keeps its handlers; they get the fields."""
    e = os.environ if environ is None else environ
    level = e.get("TASKFLOW_LOG_LEVEL", "INFO").upper()
    mode = e.get("TASKFLOW_MODE", "embedded").lower()
    fmt = (e.get("TASKFLOW_LOG_FORMAT") or ("json" if mode == "dapr" else "text")).lower()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(log_handler(fmt))
    for h in root.handlers:
        if not any(isinstance(f, _ContextFilter) for f in h.filters):
            h.addFilter(_ContextFilter())
    logging.getLogger("taskflow").setLevel(level)


# --- the SDK -------------------------------------------------------------------------------


def _otlp_endpoint(e: Mapping[str, str], signal: str) -> bool:
    return bool(e.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or e.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup(service_name: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Install the OpenTelemetry SDK once per process; False when telemetry is off."""
    global _setup_done, _enabled
    if _setup_done:
        return _enabled
    with _setup_lock:
        if _setup_done:
            return _enabled
        e = os.environ if environ is None else environ
        _enabled = e.get("TASKFLOW_TELEMETRY", "on").lower() not in {"off", "0", "false", "no"}
        if _enabled:
            _install_sdk(e.get("OTEL_SERVICE_NAME") or service_name or "taskflow", e)
        _setup_done = True
        own_endpoint = _enabled and e.get("TASKFLOW_MODE") == "dapr" and bool(e.get("TASKFLOW_METRICS_PORT"))
    if own_endpoint:
        serve_metrics(environ=e)  # a function of the stack: its own endpoint (the topology table's port)
    return _enabled


def _install_sdk(service_name: str, e: Mapping[str, str]) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    attributes = {"service.name": service_name}
    if "service.instance.id" not in e.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        # one series per process at a collector that several replicas (or workers) push to; the
        # Prometheus exporter turns it into the ``instance`` label
        attributes["service.instance.id"] = f"{socket.gethostname()}-{os.getpid()}"
    resource = Resource.create(attributes)
    exporters: list[Any] = []
    # shutdown_on_exit=False: the SDK's own exit hooks wait out the exporters' timeout and retries
    # (10-13 s with the collector down); ``shutdown`` below bounds the final push instead.
    sampler = _sampler(e)
    tracer_provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    if _otlp_endpoint(e, "TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters.append(OTLPSpanExporter())
        tracer_provider.add_span_processor(BatchSpanProcessor(exporters[-1]))
    trace.set_tracer_provider(tracer_provider)

    readers: list[MetricReader] = []
    if e.get("TASKFLOW_MODE", "embedded") != "dapr" or e.get("TASKFLOW_METRICS_PORT", "0") != "0":
        # a /metrics endpoint will be served (embedded mode, or a function of the local stack); in
        # the cluster (no port: the pod's one port is the app's) metrics leave by OTLP only
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False))
    if _otlp_endpoint(e, "METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        interval = int(e.get("OTEL_METRIC_EXPORT_INTERVAL", "10000"))
        exporters.append(OTLPMetricExporter())
        readers.append(PeriodicExportingMetricReader(exporters[-1], export_interval_millis=interval))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    metrics.set_meter_provider(meter_provider)
    bound = float(e.get("TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS") or DEFAULT_SHUTDOWN_SECONDS)
    _sdk.update(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporters=exporters,
        bound=bound,
        records_spans=sampler is None,
    )
    atexit.register(shutdown)


def _sampler(e: Mapping[str, str]) -> Any:
    """None (the SDK's choice: ``OTEL_TRACES_SAMPLER``, by default every trace) when spans are
    exported or a sampler is asked for; otherwise record only what a caller's ``traceparent`` asks
    to be sampled. Spans without an exporter are dropped when they end, so recording them costs CPU
    for nothing; ids, ``traceresponse`` and log fields stay."""
    if _otlp_endpoint(e, "TRACES") or e.get("OTEL_TRACES_SAMPLER"):
        return None
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    return ParentBased(root=ALWAYS_OFF)


def records_spans() -> bool:
    """Whether this process records spans of its own (not only those a caller asks to sample)."""
    return bool(_sdk.get("records_spans"))


def shutdown(timeout: float | None = None) -> bool:
    """Push what is left (spans, a last metric export) and stop the SDK, within ``timeout`` seconds
    (``TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS``, default 2). Runs at exit; idempotent. Past the bound
    the OTLP exporters are shut down, which ends their retry back-off at once, and what they still
    held is dropped (logged). Returns False when the bound was hit."""
    with _setup_lock:
        sdk = dict(_sdk)
        _sdk.clear()
    if not sdk:
        return True
    bound = sdk["bound"] if timeout is None else timeout
    done = threading.Event()

    def flush_and_stop() -> None:
        try:
            sdk["tracer_provider"].shutdown()
            sdk["meter_provider"].shutdown(timeout_millis=bound * 1000)
        except Exception:
            log.exception("telemetry shutdown failed")
        finally:
            done.set()

    threading.Thread(target=flush_and_stop, name="telemetry-shutdown", daemon=True).start()
    if done.wait(bound):
        return True
    log.warning("telemetry: the last export did not finish within %.1fs (collector unreachable?); dropped", bound)
    for exporter in sdk["exporters"]:
        exporter.shutdown()  # ends the retry back-off of an export in progress, and refuses the next
    done.wait(0.5)  # a send still connecting is left to the daemon thread: the process exits without it
    return False


def instrument_httpx() -> None:
    """Client spans and ``traceparent`` on outgoing webhooks sent with httpx (embedded mode's sender;
    in Dapr mode the binding sends them and the sidecar call carries the context). Set up when the
    sender is built, not at the first request: most functions never send one (cold start)."""
    if setup():
        _instrument_httpx_once()


@functools.cache
def _instrument_httpx_once() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()


def instrument_engine(engine: Any) -> None:
    """Spans for each SQL statement on ``engine`` (the statement text has bound parameters only),
    and the pool's connection-usage metric. Where spans are not recorded (no exporter) only the
    metric is kept: the statement hooks cost about 7 % of a create's Python time even with a no-op
    tracer, for spans that would be dropped."""
    if not setup():
        return
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # The instrumentation's engine listeners, attached to this engine only. Its instrument() entry
    # point declares sqlalchemy < 2.1 and patches the asyncio engine (which needs greenlet); the
    # listeners work on 2.1 (tests/functions/test_telemetry.py checks the statement spans).
    scope = "opentelemetry.instrumentation.sqlalchemy"
    usage = metrics.get_meter(scope).create_up_down_counter(
        "db.client.connections.usage", unit="{connection}", description="Connections by state (idle, used)."
    )
    if records_spans():
        EngineTracer(trace.get_tracer(scope), engine, usage, enable_commenter=False)  # type: ignore[no-untyped-call]
    else:
        _count_pool_usage(engine, usage)


def _count_pool_usage(engine: Any, usage: Any) -> None:
    """The instrumentation's pool hooks alone: the same metric, labels and transitions."""
    from sqlalchemy import event

    url = engine.url
    name = engine.pool.logging_name or f"{url.drivername}://{url.host or ''}:{url.port or ''}/{url.database or ''}"
    idle, used = {"pool.name": name, "state": "idle"}, {"pool.name": name, "state": "used"}

    def moved(before: dict[str, str] | None, after: dict[str, str] | None) -> Callable[..., None]:
        def listener(*_: Any) -> None:
            if before is not None:
                usage.add(-1, before)
            if after is not None:
                usage.add(1, after)

        return listener

    event.listen(engine, "connect", moved(None, idle))
    event.listen(engine, "close", moved(idle, None))
    event.listen(engine, "checkout", moved(idle, used))
    event.listen(engine, "checkin", moved(used, idle))


def grpc_interceptors() -> list[Any]:
    """Instrument gRPC client channels created from now on (the Dapr SDK's channel to the sidecar):
    a span per sidecar call and traceparent in its metadata. Returns no extra interceptor: the
    instrumentation wraps the channel itself."""
    if setup():
        _instrument_grpc_once()
    return []


@functools.cache
def _instrument_grpc_once() -> None:
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient

    GrpcInstrumentorClient().instrument()  # type: ignore[no-untyped-call]


def metrics_port(environ: Mapping[str, str] | None = None) -> int:
    """The embedded metrics port: ``TASKFLOW_METRICS_PORT``, default 9464, 0 = no endpoint."""
    e = os.environ if environ is None else environ
    return int(e.get("TASKFLOW_METRICS_PORT", str(DEFAULT_METRICS_PORT)) or 0)


def serve_metrics(
    port: int | None = None, host: str = "127.0.0.1", environ: Mapping[str, str] | None = None, registry: Any = None
) -> int:
    """Serve Prometheus text at http://host:port/metrics (``TASKFLOW_METRICS_PORT``, default 9464;
    0 disables): this process's metrics, or ``registry``'s (``worker_metrics.registry``: every
    gunicorn worker's). Returns the port, or 0 when not serving. A port in use is logged, not fatal."""
    global _metrics_server
    if port is None:
        port = metrics_port(environ)
    if port == 0 or not setup():
        return 0
    from prometheus_client import REGISTRY, start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY if registry is None else registry)
    except OSError as exc:
        log.warning("metrics endpoint not started on %s:%d: %s", host, port, exc)
        return 0
    _metrics_server = server
    return int(server.server_port)


# --- one request ---------------------------------------------------------------------------


def served(app_id: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Wrap a function's entry point: trace context in, one SERVER span, ``traceresponse`` out,
    the request duration metric, and a problem+json 500 (with its trace id) for anything uncaught."""

    def decorate(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(fn)
        def wrapper(request: Any) -> Any:
            app_token = telemetry.current_app.set(app_id)
            route_token = telemetry.current_route.set(None)
            try:
                if not setup(app_id):
                    return _call(fn, request)
                return _traced(fn, request)
            finally:
                telemetry.current_route.reset(route_token)
                telemetry.current_app.reset(app_token)
                _freeze_once(app_id)

        _freeze_once(None)  # the imports: the function module is loaded
        return wrapper

    return decorate


_frozen_after: set[str | None] = set()


def _freeze_once(app_id: str | None) -> None:
    """Take what the process built to get going out of the cyclic garbage collector's reach: once
    when a function module is loaded, and once after each function's first request (which builds
    its engine, SDK clients and compiled statements). A full collection otherwise walks every one
    of those objects with the interpreter lock held: 38-88 ms per collection, every few seconds
    under load, measured in embedded mode (bench/README.md). ``gc.freeze`` only moves lists (it
    costs nothing); what it freezes is never collected, so it runs a bounded number of times."""
    if app_id in _frozen_after:
        return
    _frozen_after.add(app_id)
    gc.freeze()


def _call(fn: Callable[[Any], Any], request: Any) -> Any:
    try:
        return fn(request)
    except Exception:
        from taskflow.api.http import HttpError, problem

        log.exception("unhandled error on %s %s", request.method, telemetry.current_route.get() or "?")
        return problem(HttpError(500, "Internal error", "the server failed; try again"), request.path)


def _traced(fn: Callable[[Any], Any], request: Any) -> Any:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    started = time.perf_counter()
    method = request.method
    parent = propagate.extract(request.headers)
    attributes = {"http.request.method": method, "url.scheme": request.scheme}
    span = telemetry.tracer().start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    try:
        with trace.use_span(span, end_on_exit=False):
            resp = _call(fn, request)
            route = telemetry.current_route.get()
            status = int(resp.status_code)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                log.error("%s %s answered %d", method, route or "(unmatched route)", status)
            ctx = span.get_span_context()
            resp.headers["traceresponse"] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    finally:
        span.end()
    labels = {"http.request.method": method, "http.response.status_code": status}
    if route:
        labels["http.route"] = route
    telemetry.instruments().http_duration.record(time.perf_counter() - started, labels)
    return resp
