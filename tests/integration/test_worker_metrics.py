"""`taskflow dev` with several gunicorn workers: its one metrics port counts the requests of every
worker, not only those of the worker that serves the port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskflow.worker_metrics import read_worker
from tests.blackbox import free_port, token

SECRET = "worker-metrics-test-secret-0123456789abcdef"
WORKERS = 3
ROUTE = "/v1/tasks"


def _worker_sockets(log_path: Path) -> list[Path]:
    return [Path(p) for p in re.findall(r"metrics of worker pid \d+ readable on (\S+)", log_path.read_text())]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_", "OTEL_"))}
    env |= {
        "TASKFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'taskflow.db'}",
        "TASKFLOW_JWT_SECRET": SECRET,
        "TASKFLOW_METRICS_PORT": str(metrics_port),
        "TASKFLOW_WORKERS": str(WORKERS),
        "TASKFLOW_THREADS": "2",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskflow.cli", "dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            deadline = time.monotonic() + 60
            while len(_worker_sockets(log_path)) < WORKERS or not _answers(metrics_url):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", metrics_url, log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _list_requests(text: str, suffix: str = "_count", **extra: str) -> float:
    """``http_server_request_duration_seconds_count`` (or another sample) of ``GET /v1/tasks`` answered 200."""
    want = {"http_route": ROUTE, "http_request_method": "GET", "http_response_status_code": "200", **extra}
    families = [f for f in text_string_to_metric_families(text) if f.name == "http_server_request_duration_seconds"]
    assert len(families) <= 1, "one family per metric name"
    for fam in families:
        for s in fam.samples:
            if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in want.items()):
                return float(s.value)
    return 0.0


def test_the_metrics_port_counts_the_requests_of_every_worker(server: tuple[str, str, Path]) -> None:
    base, metrics_url, log_path = server
    headers = {"Authorization": f"Bearer {token('alice', SECRET)}", "Connection": "close"}

    def one(_: int) -> int:
        # a new connection per request: gunicorn's workers take turns accepting them
        return httpx.get(f"{base}{ROUTE}", headers=headers, timeout=30).status_code

    sent = 0
    per_worker: list[float] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):  # until at least two workers have answered some of them
            statuses = list(pool.map(one, range(40)))
            assert statuses == [200] * len(statuses)
            sent += len(statuses)
            per_worker = [_list_requests(read_worker(p)) for p in _worker_sockets(log_path)]
            if sum(1 for n in per_worker if n) >= 2:
                break
    assert sum(1 for n in per_worker if n) >= 2, f"every request went to one worker: {per_worker}"
    assert sum(per_worker) == sent
    # what a Prometheus scraping the one port sees: every request, whichever worker answered it
    scraped = httpx.get(metrics_url, timeout=10)
    assert scraped.status_code == 200
    assert _list_requests(scraped.text) == sent
    assert _list_requests(scraped.text, "_bucket", le="+Inf") == sent  # the histogram adds up as well


def test_identical_series_add_up_and_others_are_kept() -> None:
    """The merge itself: counters, histogram samples and gauges of one series add up across
    workers; a series only one worker has is kept as it is; one HELP/TYPE per family."""
    from taskflow.worker_metrics import merge

    def worker(requests: int, pending: int | None) -> str:
        text = (
            "# HELP taskflow_events_published_total Outbox events accepted.\n"
            "# TYPE taskflow_events_published_total counter\n"
            f'taskflow_events_published_total{{topic="task-events"}} {requests}\n'
            "# HELP d_seconds Duration.\n# TYPE d_seconds histogram\n"
            f'd_seconds_bucket{{le="0.1"}} {requests}\nd_seconds_bucket{{le="+Inf"}} {requests}\n'
            f"d_seconds_count {requests}\nd_seconds_sum {requests * 0.05}\n"
        )
        if pending is not None:
            text += "# HELP taskflow_outbox_pending Pending.\n# TYPE taskflow_outbox_pending gauge\n"
            text += f"taskflow_outbox_pending {pending}\n"
        return text

    families = {f.name: f for f in merge([worker(3, None), worker(4, 7), worker(5, None)])}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("taskflow_events_published_total", (("topic", "task-events"),))] == 12
    assert values[("d_seconds_bucket", (("le", "+Inf"),))] == 12
    assert values[("d_seconds_count", ())] == 12
    assert values[("taskflow_outbox_pending", ())] == 7  # set by the background worker alone
    assert families["d_seconds"].type == "histogram" and families["taskflow_events_published"].type == "counter"
