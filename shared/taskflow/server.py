"""Embedded mode's HTTP server: gunicorn (gthread, keep-alive), not werkzeug's development server.

``TASKFLOW_WORKERS`` processes x ``TASKFLOW_THREADS`` threads serve the API. The background work
(the in-process event bus, the outbox relay and the cron timers) runs exactly once, in the worker
that holds an exclusive lock on a file of this server; when that worker exits, another takes the
lock over within a second or two. The other workers leave their events in the outbox (it is
written in the request's transaction anyway) and nudge the owner over a local datagram socket, so
its relay delivers them at once instead of at its next tick.

The metrics port (``TASKFLOW_METRICS_PORT``) is served by that same worker; with several workers
it shows the sum of all of them (``taskflow.worker_metrics``: each worker's registry is read over
a Unix socket at each scrape).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("taskflow.server")


def workers() -> int:
    return max(1, int(os.environ.get("TASKFLOW_WORKERS") or 1))


def threads() -> int:
    return max(1, int(os.environ.get("TASKFLOW_THREADS") or 8))


#: A datagram that asks the owner to run its relay now (the others carry events).
NUDGE = b"!"
#: Larger than any datagram a local socket accepts (the send buffer, 208 KiB by default).
MAX_DATAGRAM = 1 << 20
RECORD_SEPARATOR = b"\x1e"  # between the events of one datagram (JSON escapes every control character)
SEND_WAIT = 0.05  # seconds a worker waits for room in the owner's queue before nudging instead


class RelayNudge:
    """The publisher of a worker without the bus: the event is handed to the worker that runs the
    bus over a local datagram socket, and stays pending in the outbox until that bus has delivered
    it (the bus marks it sent, hence ``acknowledges_delivery``). An event the socket does not take
    (too large, the owner's queue still full after a short wait) becomes a nudge: the owner's relay
    reads it from the outbox now. With no owner at all, the next relay tick sends it.

    A group commit's events go as one datagram (``publish_batch``): the kernel queues only a few
    datagrams per socket (``net.unix.max_dgram_qlen``, 10 by default), and a burst of one datagram
    per event overflowed it, sending most of a group through the relay's outbox read instead."""

    acknowledges_delivery = True

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(SEND_WAIT)  # a full queue drains in microseconds once the owner runs

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        self._send(_record(topic, event_json, partition_key))

    def publish_batch(self, topic: str, items: list[tuple[str, str, str]]) -> dict[str, str]:
        """Hand several events over in one datagram; none fails here (the outbox keeps them all)."""
        self._send(RECORD_SEPARATOR.join(_record(topic, event_json, key) for _, event_json, key in items))
        return {}

    def _send(self, datagram: bytes) -> None:
        with contextlib.suppress(OSError):
            try:
                self._sock.sendto(datagram, self.path)
            except OSError:
                self._sock.sendto(NUDGE, self.path)


def _record(topic: str, event_json: str, partition_key: str) -> bytes:
    return f"{topic}\n{partition_key}\n{event_json}".encode()


def _handed_over(bus: Any, datagram: bytes) -> bool:
    """Publish the events a worker handed over on the owner's bus; False when the relay must run
    (a nudge, or an event the bus refused: it is still pending in the outbox)."""
    if datagram == NUDGE:
        return False
    from taskflow.service_layer.ports import PublishError

    handed = True
    for record in datagram.split(RECORD_SEPARATOR):
        topic, partition_key, event_json = record.decode().split("\n", 2)
        try:
            bus.publish(topic, event_json, partition_key)
        except PublishError:
            log.warning("an event handed over by a worker was refused; the relay sends it")
            handed = False
    return handed


class Background:
    """Who runs the background work: the holder of an exclusive ``flock`` on ``lock_path``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.lock_path = state_dir / "background.lock"
        self.nudge_path = state_dir / "relay.sock"
        self._fd: int | None = None
        self._stop = threading.Event()

    def try_take(self) -> bool:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd  # held until this process exits
        return True

    def run(self, emb: Any) -> None:
        """Start the background work in this worker now, or as soon as the lock is free."""
        if self.try_take():
            self._own(emb)
            return
        emb.root.use(publisher=RelayNudge(self.nudge_path))

        def wait_for_lock() -> None:
            while not self._stop.wait(1.0):
                if self.try_take():
                    self._own(emb)
                    return

        threading.Thread(target=wait_for_lock, name="background-standby", daemon=True).start()

    def _own(self, emb: Any) -> None:
        from taskflow import observability

        emb.start_background()
        # one port, served by this worker: with several workers, the sum of every worker's metrics
        registry = None
        if workers() > 1:
            from taskflow import worker_metrics

            registry = worker_metrics.registry(self.state_dir)
        metrics_port = observability.serve_metrics(registry=registry)
        if metrics_port:
            log.info("metrics (Prometheus text) on http://127.0.0.1:%d/metrics", metrics_port)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.nudge_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.nudge_path))
        sock.settimeout(1.0)

        def relay_on_nudge() -> None:
            # one receive buffer for every datagram (recv(MAX_DATAGRAM) allocated 1 MiB per event)
            buffer = memoryview(bytearray(MAX_DATAGRAM))

            def receive() -> bytes:
                return bytes(buffer[: sock.recv_into(buffer)])

            while not self._stop.is_set():
                try:
                    datagrams = [receive()]
                except TimeoutError:
                    continue
                except OSError:
                    return
                sock.setblocking(False)  # take everything queued meanwhile: at most one relay for all
                try:
                    while True:
                        datagrams.append(receive())
                except OSError:
                    pass
                sock.settimeout(1.0)
                relay = False
                for datagram in datagrams:
                    try:
                        relay = not _handed_over(emb.bus, datagram) or relay
                    except Exception:
                        log.exception("an event handed over by a worker could not be read; the relay sends it")
                        relay = True
                if not relay:
                    continue
                try:
                    emb.tick("event-fanout")
                except Exception:
                    log.exception("relay after a nudge failed; the timer retries")

        threading.Thread(target=relay_on_nudge, name="relay-nudge", daemon=True).start()
        log.info("background work (event bus, outbox relay, timers) runs in worker pid %d", os.getpid())

    def stop(self) -> None:
        self._stop.set()


def _application(host: str, port: int, state_dir: Path) -> Any:
    import gunicorn.app.base

    class Application(gunicorn.app.base.BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.emb: Any = None
            self.background = Background(state_dir)
            super().__init__()

        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": workers(),
                "worker_class": "gthread",
                "threads": threads(),
                "keepalive": 5,  # seconds: clients reuse connections instead of paying a connect per request
                "timeout": 60,
                "graceful_timeout": 10,
                "accesslog": None,
                "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "warning"),
                "proc_name": "taskflow",
                "worker_exit": self._worker_exit,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            """In each worker after the fork: its own root, engine and function apps."""
            from taskflow import observability
            from taskflow.embedded import Embedded

            # per worker: the SDK's threads do not survive the fork
            if observability.setup("taskflow") and workers() > 1 and observability.metrics_port():
                from taskflow import worker_metrics

                path = worker_metrics.WorkerExposition(state_dir).start()
                log.info("metrics of worker pid %d readable on %s", os.getpid(), path)
            self.emb = Embedded().start(background=False)
            self.background.run(self.emb)
            return self.emb.apps["tasks-api"]

        def _worker_exit(self, _arbiter: Any, _worker: Any) -> None:
            self.background.stop()
            if self.emb is not None:
                self.emb.stop()

    return Application()


def serve(host: str, port: int) -> None:
    """Migrate once, then run gunicorn; every worker builds its own root after the fork."""
    from sqlalchemy.engine import make_url

    from taskflow import bootstrap, config

    root = bootstrap.Root(config.load())
    _ = root.jwt_secret  # fail fast, or warn loudly about the dev secret, before serving
    _ = root.engine  # embedded mode creates and migrates its database here, once
    url = root.database_url
    root.close()
    state_dir = Path(tempfile.mkdtemp(prefix="taskflow-server-"))
    log.info(
        "TaskFlow embedded mode on http://%s:%d (database %s; %d worker(s) x %d threads)",
        host,
        port,
        make_url(url).render_as_string(hide_password=True),
        workers(),
        threads(),
    )
    master = os.getpid()
    try:
        _application(host, port, state_dir).run()
    finally:
        if os.getpid() == master:  # a worker leaves through here too (SystemExit after the fork)
            shutil.rmtree(state_dir, ignore_errors=True)
