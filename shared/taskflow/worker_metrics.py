"""One ``/metrics`` for every gunicorn worker of embedded mode (``TASKFLOW_WORKERS`` > 1).

Each worker process has its own OpenTelemetry SDK and Prometheus registry, so the port served by one
worker used to show only that worker's requests. Now each worker serves its own registry's text on
a Unix socket in the server's state directory (``metrics-<pid>.sock``, mode 0600, nothing on the
network), and the port's registry is ``AllWorkers``: at each scrape it reads every worker's text,
parses it with ``prometheus_client``'s parser and adds the samples of the same series together.

Counters and histograms add up across workers, as prometheus_client's own multiprocess mode does.
Gauges add up too: ``db_client_connections_usage`` is per worker's pool, and the outbox gauges are
set by the one worker that runs the background work only. A worker that exits takes its counts
with it (its socket is gone at the next scrape; Prometheus's ``rate`` treats the drop as a reset).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

log = logging.getLogger("taskflow.worker_metrics")

SOCKET_GLOB = "metrics-*.sock"
READ_TIMEOUT = 5.0


def socket_path(state_dir: Path, pid: int | None = None) -> Path:
    return state_dir / f"metrics-{os.getpid() if pid is None else pid}.sock"


class WorkerExposition:
    """This worker's registry as Prometheus text, written to whoever connects to its socket."""

    def __init__(self, state_dir: Path) -> None:
        self.path = socket_path(state_dir)
        self._server: socketserver.UnixStreamServer | None = None

    def start(self) -> Path:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError):  # the reader gave up (its timeout): nothing to do
                    self.request.sendall(generate_latest(REGISTRY))

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a previous worker with this pid (pids are reused)
        old_umask = os.umask(0o177)
        try:
            server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        finally:
            os.umask(old_umask)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
        self._server = server
        return self.path

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def read_worker(path: Path, timeout: float = READ_TIMEOUT) -> str:
    """The Prometheus text one worker serves on ``path`` (raises OSError when it is gone)."""
    chunks = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def merge(texts: Iterable[str]) -> list[Metric]:
    """Metric families of several expositions, the values of identical series added together."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            series = values[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                series[key] = series.get(key, 0.0) + s.value
    out = []
    for name, fam in families.items():
        fam.samples = [Sample(n, dict(labels), v) for (n, labels), v in values[name].items()]
        out.append(fam)
    return out


class AllWorkers(Collector):
    """A prometheus_client collector: every live worker's metrics, merged (see the module doc)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def texts(self) -> Iterator[str]:
        for path in sorted(self.state_dir.glob(SOCKET_GLOB)):
            try:
                yield read_worker(path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # that worker exited; its successor has a socket of its own
            except OSError as exc:
                log.warning("metrics of the worker at %s not read: %s", path.name, exc)

    def collect(self) -> Iterable[Metric]:
        return merge(self.texts())


def registry(state_dir: Path) -> CollectorRegistry:
    """A registry holding only ``AllWorkers(state_dir)``, for the metrics port."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AllWorkers(state_dir))
    return reg
