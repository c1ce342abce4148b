"""A function stops quickly whatever the state of its OTLP collector: the last push at exit is bounded
(``TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS``, default 2 s) instead of waiting out the exporters' 10 s
timeout and retries; and when the collector answers, that last push still reaches it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# A process that records one span and one metric, says so, and exits at once: only the exit-time
# push can deliver them (the batch span processor waits 5 s, the metric reader 60 s).
CHILD = """
import sys
from taskflow import observability, telemetry
assert observability.setup("shutdown-test")
with telemetry.continued({}, "work"):
    telemetry.instruments().events_published.add(1, {"topic": "task-events"})
print("exiting", flush=True)
sys.exit(0)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def _run_child(endpoint: str, **extra: str) -> tuple[float, str]:
    """Seconds from the child's last line to its exit, and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "OTEL_"))}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "60000", **extra}
    env |= {"TASKFLOW_MODE": "embedded", "TASKFLOW_METRICS_PORT": "0", "TASKFLOW_LOG_FORMAT": "text"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.strip() == "exiting":
            break
    t0 = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    text = "".join(out) + rest
    assert proc.returncode == 0, text
    return elapsed, text


def test_exit_is_bounded_when_the_collector_is_down() -> None:
    elapsed, out = _run_child(f"http://127.0.0.1:{_closed_port()}")
    # the exporters alone would retry for 10 s per signal (10-13 s measured before the bound)
    assert elapsed < 6.0, f"exit took {elapsed:.1f}s:\n{out}"
    assert "did not finish within 2.0s" in out


def test_the_bound_is_configurable() -> None:
    elapsed, out = _run_child(f"http://127.0.0.1:{_closed_port()}", TASKFLOW_TELEMETRY_SHUTDOWN_SECONDS="0.5")
    assert elapsed < 3.5, f"exit took {elapsed:.1f}s:\n{out}"


class _Receiver(BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def otlp_endpoint() -> Iterator[tuple[str, list[str]]]:
    """An OTLP/HTTP endpoint that accepts every export and records its path."""
    _Receiver.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.paths
    finally:
        server.shutdown()
        server.server_close()


def test_the_last_spans_and_metrics_are_pushed_at_exit(otlp_endpoint: tuple[str, list[str]]) -> None:
    endpoint, paths = otlp_endpoint
    elapsed, out = _run_child(endpoint)
    assert sorted(set(paths)) == ["/v1/metrics", "/v1/traces"], out
    assert elapsed < 5.0
    assert "did not finish" not in out
