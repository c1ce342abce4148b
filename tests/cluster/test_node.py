"""The node itself: Ready, runs a pod that meets the `restricted` Pod Security Standard, refuses one that does not."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

pytestmark = pytest.mark.cluster


def test_node_ready_with_the_versions_built_here(cluster: Any) -> None:
    from cluster import NODE_NAME

    node = json.loads(cluster.kubectl("get", "node", NODE_NAME, "-o", "json"))
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    info = node["status"]["nodeInfo"]
    import bootstrap

    assert info["kubeletVersion"] == bootstrap.KUBERNETES_VERSION
    assert info["containerRuntimeVersion"].startswith("containerd://")


def test_restricted_pod_runs_in_the_taskflow_namespace(cluster: Any) -> None:
    seconds = cluster.run_smoke_pod()
    print(f"\n[cluster] restricted pause pod Ready in {seconds:.1f}s")
    cluster.kubectl("delete", "pod", "smoke", "-n", "taskflow", "--wait=false")


def test_privileged_pod_is_refused_by_pod_security(cluster: Any) -> None:
    from cluster import kubectl_cmd

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": "taskflow"},
        "spec": {
            "containers": [
                {"name": "c", "image": "dev.local/kubernetes/pause:x", "securityContext": {"privileged": True}}
            ]
        },
    }
    res = subprocess.run(
        kubectl_cmd("apply", "--dry-run=server", "-f", "-"), input=json.dumps(pod), capture_output=True, text=True
    )
    assert res.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in res.stderr
