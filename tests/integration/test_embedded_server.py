"""`taskflow dev` as a user runs it: gunicorn with several worker processes, keep-alive, and the
background work (event bus, outbox relay, timers) in exactly one of them, taken over when that
worker dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox import free_port, token

SECRET = "embedded-server-test-secret-0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_"))} | {
        "TASKFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'taskflow.db'}",
        "TASKFLOW_JWT_SECRET": SECRET,
        "TASKFLOW_METRICS_PORT": "0",
        "TASKFLOW_FANOUT_INTERVAL": "30",  # slower than the test: events must arrive without waiting for a tick
        "TASKFLOW_WORKERS": "2",
        "TASKFLOW_THREADS": "4",
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
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _owners(log_path):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            yield base, log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _owners(log_path: Path) -> list[int]:
    return [int(p) for p in re.findall(r"background work .* runs in worker pid (\d+)", log_path.read_text())]


def _history_complete(client: httpx.Client, ids: list[str], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.get(f"/v1/tasks/{i}/history").json()["items"] for i in ids):
            return True
        time.sleep(0.1)
    return False


def _create_many(base: str, n: int) -> list[str]:
    """Creates over several keep-alive connections, so that both workers take some."""
    ids: list[str] = []
    clients = [
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token('ann', SECRET)}"}) for _ in range(4)
    ]
    try:
        for i in range(n):
            resp = clients[i % 4].post("/v1/tasks", json={"title": f"task {i}", "tags": ["x"]})
            assert resp.status_code == 201, resp.text
            assert resp.headers.get("connection", "").lower() != "close"
            ids.append(resp.json()["id"])
    finally:
        for c in clients:
            c.close()
    return ids


def test_two_workers_run_the_background_work_once_and_hand_it_over(server: tuple[str, Path]) -> None:
    base, log_path = server
    assert len(_owners(log_path)) == 1
    client: Any = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token('ann', SECRET)}"})
    with client:
        ids = _create_many(base, 24)
        assert _history_complete(client, ids, timeout=5.0)  # well before the 30 s relay tick

        owner = _owners(log_path)[0]
        os.kill(owner, signal.SIGKILL)  # gunicorn starts a new worker; one of the two takes over
        deadline = time.monotonic() + 20
        while len(_owners(log_path)) < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert _owners(log_path)[1] != owner

        more = _create_many(base, 12)
        assert _history_complete(client, more, timeout=5.0)
    assert len(_owners(log_path)) == 2  # never two at once: one takeover per death


def test_a_worker_hands_its_events_to_the_owner_and_nudges_when_one_does_not_fit(tmp_path: Path) -> None:
    """What travels on the owner's socket: each event whole (the owner's bus publishes it without
    reading the outbox), or, for one the socket refuses, a nudge that makes the owner's relay read it."""
    import socket

    from taskflow.server import NUDGE, RelayNudge, _handed_over

    owner = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    owner.bind(str(tmp_path / "relay.sock"))
    owner.settimeout(5)
    worker = RelayNudge(tmp_path / "relay.sock")
    event = '{"id": "e1", "type": "com.taskflow.task.created.v1", "data": {"title": "a\\nb"}}'
    worker.publish("task-events", event, "task-1")

    class Bus:
        published: list[tuple[str, str, str]] = []

        def publish(self, topic: str, event_json: str, partition_key: str) -> None:
            self.published.append((topic, event_json, partition_key))

    bus = Bus()
    assert _handed_over(bus, owner.recv(1 << 20)) is True
    assert bus.published == [("task-events", event, "task-1")]

    worker._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # smaller than the next event
    worker.publish("task-events", event.replace("a\\nb", "x" * 20_000), "task-1")
    datagram = owner.recv(1 << 20)
    assert datagram == NUDGE
    assert _handed_over(bus, datagram) is False  # the owner runs its relay
    assert len(bus.published) == 1
    owner.close()


def test_a_group_of_events_travels_as_one_datagram_and_a_burst_waits_for_room(tmp_path: Path) -> None:
    """A group commit's events: one datagram the owner's bus publishes in order. The kernel queues
    only a few datagrams per socket; a worker sending faster than the owner reads waits briefly
    for room instead of turning events into nudges (each a read of the outbox by the relay)."""
    import socket
    import threading

    from taskflow.server import NUDGE, RelayNudge, _handed_over

    owner = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    owner.bind(str(tmp_path / "relay.sock"))
    owner.settimeout(5)
    worker = RelayNudge(tmp_path / "relay.sock")
    events = [(f"e{i}", f'{{"id": "e{i}", "data": {{"title": "line\\nbreak {i}"}}}}', f"task-{i}") for i in range(8)]
    assert worker.publish_batch("task-events", events) == {}

    class Bus:
        def __init__(self) -> None:
            self.published: list[tuple[str, str, str]] = []

        def publish(self, topic: str, event_json: str, partition_key: str) -> None:
            self.published.append((topic, event_json, partition_key))

    bus = Bus()
    assert _handed_over(bus, owner.recv(1 << 20)) is True
    assert bus.published == [("task-events", body, key) for _, body, key in events]

    # A burst larger than the kernel's queue, read slowly: every event arrives whole, no nudge.
    burst = 40
    received: list[bytes] = []

    def read_slowly() -> None:
        while len(received) < burst:
            received.append(owner.recv(1 << 20))
            time.sleep(0.002)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    for i in range(burst):
        worker.publish("task-events", f'{{"id": "b{i}"}}', f"task-{i}")
    reader.join(10)
    assert NUDGE not in received
    assert len(received) == burst
    owner.close()
