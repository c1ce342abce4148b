"""The rendered chart against the real API server with the real Knative and Dapr webhooks (server-side dry run).

Kinds the cluster does not serve (Strimzi's Kafka resources: no registry here serves the operator's
images, nor Knative Eventing's sources when Eventing is not installed) are left out of the dry run and
named in the test output; everything else must be admitted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def _check_chart() -> Any:
    spec = importlib.util.spec_from_file_location("check_chart", REPO / "tools" / "check_chart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_chart"] = module
    spec.loader.exec_module(module)
    return module


cc = _check_chart()
VARIANTS = cc.variants()


def _served(cluster: Any) -> set[tuple[str, str]]:
    out = cluster.kubectl("api-resources", "--no-headers")
    pairs = set()
    for line in out.splitlines():
        cols = line.split()
        pairs.add((cols[-3], cols[-1]))
    return pairs


@pytest.fixture(scope="module")
def served(cluster: Any) -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs the API server serves, after adding the CRDs of kinds the chart renders
    that no installed controller brings (Knative Eventing's PingSource, Strimzi's, prometheus-operator's
    monitors and rules of values-cloud.yaml's monitoring): tools/crds.py's
    copies in .cache/crds, so the API server checks those objects against their real schemas too."""
    import crds

    extra = [
        crds.CRD_DIR / e["file"]
        for e in json.loads((crds.CRD_DIR / crds.MANIFEST_NAME).read_text())["crds"]
        if e["file"].startswith(("knative-pingsource", "strimzi-", "prometheus-"))
    ]
    for f in extra:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    if extra:
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return _served(cluster)


def _dry_run(objs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    from cluster import kubectl_cmd

    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    return subprocess.run(
        kubectl_cmd("apply", "--dry-run=server", "-n", "taskflow", "-f", "-"),
        input=doc,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v).replace("/", "-") for v in VARIANTS])
def test_rendered_chart_is_admitted(served: set[tuple[str, str]], variant: Any) -> None:
    _, objs = cc.render(variant, with_sentinels=True)
    sent = [o for o in objs if (o["apiVersion"], o["kind"]) in served]
    left = sorted({f"{o['apiVersion']}/{o['kind']}" for o in objs if (o["apiVersion"], o["kind"]) not in served})
    if left:
        print(f"\n[{variant}] not served by this cluster, not dry-run: {', '.join(left)}")
    assert sent
    res = _dry_run(sent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("(server dry run)") == len(sent)


def _ksvcs(*sets: str) -> list[dict[str, Any]]:
    extra = [arg for kv in sets for arg in ("--set", kv)]
    objs = cc.parse(cc.render_text(None, cc.sentinel_sets(), extra=extra))
    return [o for o in objs if o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative")]


def test_the_charts_timeout_limit_is_the_real_webhooks(served: set[tuple[str, str]]) -> None:
    """knative.maxRevisionTimeoutSeconds' default (600) is exactly what a default Knative admits: 600 is
    admitted; 601 is refused by the chart, and, with the chart told the cluster allows more than it does,
    by Knative's webhook."""
    assert _dry_run(_ksvcs("knative.timeoutSeconds=600")[:1]).returncode == 0
    with pytest.raises(cc.ChartError, match=r"exceeds knative\.maxRevisionTimeoutSeconds=600"):
        _ksvcs("knative.timeoutSeconds=601")
    res = _dry_run(_ksvcs("knative.timeoutSeconds=601", "knative.maxRevisionTimeoutSeconds=3600")[:1])
    assert res.returncode != 0
    assert "admission webhook" in res.stderr and "timeoutSeconds" in res.stderr


def test_knative_refuses_a_pod_level_security_context(served: set[tuple[str, str]]) -> None:
    """The fault issue 14 started from: the webhook rejects spec.template.spec.securityContext by default."""
    _, objs = cc.render(cc.Variant(None, "dapr", True), with_sentinels=True)
    ksvc = next(o for o in objs if o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative"))
    ksvc["spec"]["template"]["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    res = _dry_run([ksvc])
    assert res.returncode != 0
    assert "must not set the field(s): spec.template.spec.securityContext" in res.stderr
