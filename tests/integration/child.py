"""A function served in an interpreter of its own: what only a new process shows (its start-up
objects, its telemetry exporters), on an SQLite database in the test's folder."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any


def run_child(code: str, tmp_path: object, *args: str, **env: str) -> tuple[Any, str]:
    """Run ``code`` with ``args`` in a fresh interpreter, with TaskFlow's and OpenTelemetry's settings
    cleared but for a database, a random JWT secret, no metrics port and ``env``; the JSON of its last
    line of output, and its standard error."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "OTEL_"))}
    clean |= {
        "TASKFLOW_DATABASE_URL": f"sqlite:///{tmp_path}/taskflow.db",
        "TASKFLOW_JWT_SECRET": secrets.token_hex(32),
        "TASKFLOW_METRICS_PORT": "0",
        **env,
    }
    proc = subprocess.run([sys.executable, "-c", code, *args], env=clean, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
