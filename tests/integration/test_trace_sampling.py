"""Which spans a process records: all of them when they have somewhere to go (an OTLP endpoint, or
an ``OTEL_TRACES_SAMPLER`` asked for); without an exporter only those a caller's ``traceparent``
asks to sample, because the rest would be dropped when they end. Either way every answer carries
``traceresponse`` with a fresh trace id, and the logs and problem bodies carry that id.

Each case runs embedded mode's tasks-api in a child process: the tracer provider is set once per
process."""

from __future__ import annotations

import secrets
import socket

from tests.integration.child import run_child

CHILD = """
import json, sys
from taskflow import observability
from taskflow.embedded import Embedded
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

observability.setup("tasks-api")
spans = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))
client = Embedded().start(timers=False, background=False).apps["tasks-api"].test_client()
out = {}
resp = client.get("/healthz")
out["plain"] = resp.headers["traceresponse"]
resp = client.get("/healthz", headers={"traceparent": sys.argv[1]})
out["sampled_parent"] = resp.headers["traceresponse"]
resp = client.get("/v1/tasks")  # no token: a problem body
out["problem"] = [resp.headers["traceresponse"], resp.get_json()["trace_id"]]
out["recorded"] = sorted({s.name for s in spans.get_finished_spans()})
from prometheus_client import REGISTRY
samples = [s for m in REGISTRY.collect() for s in m.samples]
out["pool"] = {s.labels["state"]: s.value for s in samples if s.name == "db_client_connections_usage"}
print(json.dumps(out))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: object, **extra: str) -> tuple[dict[str, object], str, str]:
    trace_id = secrets.token_hex(16)
    parent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    out, stderr = run_child(CHILD, tmp_path, parent, TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS="0.2", **extra)
    return out, trace_id, stderr


def _parts(traceresponse: str) -> tuple[str, bool]:
    """The trace id, and the ``sampled`` flag (bit 0; bit 1 says the id is random)."""
    version, trace_id, span_id, flags = traceresponse.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and int(trace_id, 16) != 0
    return trace_id, bool(int(flags, 16) & 1)


def test_without_an_exporter_ids_are_made_but_only_a_callers_sampled_trace_is_recorded(tmp_path: object) -> None:
    out, parent_trace, _ = _run(tmp_path)
    plain_trace, plain_flags = _parts(out["plain"])  # type: ignore[arg-type]
    assert plain_flags is False  # not recorded, and said so
    sampled_trace, sampled_flags = _parts(out["sampled_parent"])  # type: ignore[arg-type]
    assert (sampled_trace, sampled_flags) == (parent_trace, True)  # the caller's decision holds
    problem_header, problem_id = out["problem"]  # type: ignore[misc]
    assert _parts(problem_header)[0] == problem_id != plain_trace
    assert out["recorded"] == ["GET /healthz"]  # the sampled request's span only
    assert out["pool"] == {"idle": 1, "used": 0}  # the pool metric is kept (one connection, returned)


def test_with_an_exporter_every_request_is_recorded(tmp_path: object) -> None:
    out, _, _ = _run(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    assert _parts(out["plain"])[1] is True  # type: ignore[arg-type]
    assert _parts(out["problem"][0])[1] is True  # type: ignore[index]
    assert "GET /v1/tasks" in out["recorded"]  # type: ignore[operator]
    assert out["pool"] == {"idle": 1, "used": 0}


def test_an_explicit_sampler_wins(tmp_path: object) -> None:
    out, _, _ = _run(tmp_path, OTEL_TRACES_SAMPLER="always_on")
    assert _parts(out["plain"])[1] is True  # type: ignore[arg-type]
    assert {"GET /healthz", "GET /v1/tasks"} <= set(out["recorded"])  # type: ignore[arg-type]
