"""Process supervision shared by tools/stack.py and tools/cluster.py (stdlib only).

Every process runs in its own session (process group), so Ctrl-C reaches only the supervisor, which
then stops its children in the order it chooses; output goes to an appended log file and
``Proc.new_output()`` reads what this run wrote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


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
