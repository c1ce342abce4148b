"""Process supervision shared by tools/stack.py and tools/cluster.py (stdlib only).

Every process runs in its own session (process group), so Ctrl-C reaches only the supervisor, which
then stops its children in the order it chooses; output goes to an appended log file and
``Proc.new_output()`` reads what this run wrote. ``Supervisor`` restarts a process that dies (same
command, same ports) with an exponential backoff, as a kubelet restarts a crashed container;
``Lifecycle`` is the start/stop shape of the stack and the cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_offset: int = 0  # where this run's output starts in the (appended) log file

    def new_output(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.new_output().splitlines()[-n:])


def spawn(name: str, cmd: list[str], env: dict[str, str], logfile: Path, cwd: Path | None = None) -> Proc:
    """Start ``cmd`` in its own process group, output appended to ``logfile``."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as f:
        f.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        f.flush()
        offset = f.tell()
        popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: Ctrl-C reaches us, we stop them in order
        )
    return Proc(name, popen, logfile, offset)


def stop(procs: Iterable[Proc], timeout: float = 15.0, log: Callable[[str], None] = print) -> None:
    """SIGTERM every process group, wait up to ``timeout`` in total, then SIGKILL what is left."""
    procs = list(procs)
    for p in procs:
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{p.name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait(timeout=5)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def http_status(url: str, timeout: float = 2.0) -> int:
    """HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


@dataclass
class Supervised:
    """One process kept running: ``launch()`` starts it (again), with the same command and ports.

    ``probe`` replaces the child-process check for something that is not our child (a PostgreSQL
    cluster started with ``pg_ctlcluster``): it answers whether the thing is up.
    """

    name: str
    launch: Callable[[], Proc | None]
    proc: Proc | None = None
    probe: Callable[[], bool] | None = None
    restarts: int = 0
    backoff: float = 0.0
    down_since: float | None = None
    retry_at: float = 0.0
    up_since: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        if self.probe is not None:
            return self.probe()
        return self.proc is not None and self.proc.alive()


class Supervisor:
    """Restarts dead processes with an exponential backoff (``min_backoff`` doubling up to
    ``max_backoff``; back to the minimum once a process stayed up ``stable_after`` seconds).

    ``poll()`` does one round; ``run_in_background()`` polls from a thread until ``close()``. Every
    exit and restart is logged with the exit code and the restart count.
    """

    def __init__(
        self,
        log: Callable[[str], None] = print,
        min_backoff: float = 0.5,
        max_backoff: float = 15.0,
        stable_after: float = 30.0,
        interval: float = 0.25,
    ) -> None:
        self.log = log
        self.min_backoff, self.max_backoff, self.stable_after = min_backoff, max_backoff, stable_after
        self.interval = interval
        self.items: dict[str, Supervised] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, item: Supervised) -> Supervised:
        with self._lock:
            item.backoff = item.backoff or self.min_backoff
            self.items[item.name] = item
        return item

    @property
    def restarts(self) -> dict[str, int]:
        with self._lock:
            return {n: s.restarts for n, s in self.items.items()}

    def poll(self) -> list[str]:
        """One round: note what died, restart what is due. Returns the names restarted."""
        restarted = []
        with self._lock:
            now = time.monotonic()
            for s in self.items.values():
                if s.alive():
                    if s.down_since is None and now - s.up_since > self.stable_after:
                        s.backoff = self.min_backoff
                    continue
                if s.down_since is None:
                    s.down_since, s.retry_at = now, now + s.backoff
                    rc = s.proc.popen.returncode if s.proc is not None and s.probe is None else None
                    self.log(f"{s.name} exited (rc={rc}); restarting in {s.backoff:.1f}s")
                    continue
                if now < s.retry_at:
                    continue
                try:
                    s.proc = s.launch()
                except Exception as e:  # a failed start is retried like a crash
                    self.log(f"{s.name}: restart failed: {e}")
                s.restarts += 1
                s.down_since = None
                s.up_since = time.monotonic()
                s.backoff = min(self.max_backoff, s.backoff * 2)
                pid = s.proc.popen.pid if s.proc is not None and s.probe is None else "-"
                self.log(f"restarted {s.name} (restart {s.restarts}, pid {pid})")
                restarted.append(s.name)
        return restarted

    def run_in_background(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.poll()
                except Exception as e:  # keep supervising whatever one round raised
                    self.log(f"supervisor: {e!r}")

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop supervising (before stopping the processes, so nothing is restarted meanwhile)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


class Lifecycle:
    """``start()`` runs ``_start()``; on any failure there (Ctrl-C too) ``stop()`` cleans up what it began
    and the error propagates. A context manager: ``with Thing() as t: ...``. Subclasses define
    ``_start()``, ``stop()`` and ``_up(seconds)`` (what to report once started)."""

    _started: bool

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _up(self, seconds: float) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        self._up(time.monotonic() - t0)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def foreground(
    thing: Lifecycle,
    name: str,
    errors: tuple[type[BaseException], ...],
    check: Callable[[], list[str]],
    running: str,
    logs: Path,
    log: Callable[[str], None] = print,
    after_start: Callable[[], int | None] | None = None,
) -> int:
    """Run ``thing`` in the foreground of a CLI until Ctrl-C or SIGTERM, or until ``check()`` names
    processes that exited; then stop it. During ``start()`` SIGTERM behaves like Ctrl-C (``start()``
    cleans up what it began). ``after_start`` may end the run at once with an exit code.
    Returns the exit code: 0, 1 (an error or an exited process) or 130 (interrupted during start)."""
    stopping = threading.Event()

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, interrupt)
    try:
        thing.start()
        if after_start is not None and (rc := after_start()) is not None:
            thing.stop()
            return rc
    except errors as e:
        print(f"[{name}] ERROR: {e}", file=sys.stderr, flush=True)
        thing.stop()
        return 1
    except KeyboardInterrupt:
        print(f"[{name}] interrupted during start; stopped", file=sys.stderr, flush=True)
        return 130
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log(running)
    rc = 0
    while not stopping.wait(1.0):
        dead = check()
        if dead:
            log(f"ERROR: {', '.join(dead)} exited; stopping (logs in {logs})")
            rc = 1
            break
    log("stopping")
    thing.stop()
    return rc
