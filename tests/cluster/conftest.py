"""The local Kubernetes cluster (tools/cluster.py), started once for the whole tests/cluster session."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

API_PORT = int(os.environ.get("TASKFLOW_CLUSTER_TEST_PORT", "18180"))
JWT_SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("the local cluster needs root (containerd, kubelet, iptables)")
    from cluster import Cluster

    env = {
        "TASKFLOW_JWT_SECRET": JWT_SECRET,
        "TASKFLOW_FANOUT_INTERVAL": "1",
        "TASKFLOW_REMINDER_INTERVAL": "2",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    c = Cluster(port=API_PORT, run_bootstrap=True)
    try:
        c.start()
        print(f"\n[cluster] timings: {c.timings}", flush=True)
        yield c
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
