"""The first sidecar call imports only the SDK's gRPC client (cold start), and the SDK stays whole."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from taskflow.adapters.dapr import grpc_sdk
client = grpc_sdk()
assert client.DaprGrpcClient.__module__ == "dapr.clients.grpc.client"
assert "aiohttp" not in sys.modules, "the SDK's HTTP clients were imported"
from dapr.clients import DaprClient  # the package's own names still resolve, in full
import dapr.clients
assert issubclass(dapr.clients.DaprClient, client.DaprGrpcClient) and DaprClient is dapr.clients.DaprClient
print("ok")
"""


def test_the_grpc_client_comes_without_the_sdks_http_clients() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
