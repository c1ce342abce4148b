"""The supervisor of the local stack (tools/procs.py): a process that dies is started again with the
same command, after a backoff that grows, and every exit and restart is logged."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tests.toolmodules import load_tool

procs = load_tool("procs")


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met")


def test_a_killed_process_is_restarted_with_backoff_and_logged(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = procs.Supervisor(log=lines.append, min_backoff=0.1, max_backoff=1.0, interval=0.05)
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]

    def launch() -> object:
        return procs.spawn("sleeper", cmd, dict(os.environ), tmp_path / "sleeper.log")

    item = sup.add(procs.Supervised("sleeper", launch, launch()))
    sup.run_in_background()
    try:
        for n in (1, 2):
            pid = item.proc.popen.pid
            os.killpg(pid, signal.SIGKILL)
            _wait(lambda n=n: sup.restarts["sleeper"] == n and item.proc.alive())
            assert item.proc.popen.pid != pid
            assert item.proc.popen.args == cmd  # the same command (and so the same ports)
        assert item.backoff == 0.4  # 0.1 doubled after each restart
        assert "sleeper exited (rc=-9); restarting in 0.1s" in lines
        assert any(line.startswith("restarted sleeper (restart 2, pid ") for line in lines)
    finally:
        sup.close()
        procs.stop([item.proc], timeout=5, log=lines.append)
    assert not item.proc.alive()
    assert sup.restarts["sleeper"] == 2  # nothing restarted once the supervisor was closed
