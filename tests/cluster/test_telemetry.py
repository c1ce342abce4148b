"""Monitoring on the local cluster: the chart's own OpenTelemetry Collector (monitoring.collector,
built from tools/otelcol like the stack's) receives the spans of every function and every daprd and
the functions' metrics, which its Prometheus exporter serves; daprd's own metrics port is the one the
chart's PodMonitor names."""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import blackbox
from tests.blackbox import user_client

from .conftest import JWT_SECRET

pytestmark = pytest.mark.cluster

NAMESPACE = "taskflow"
eventually = functools.partial(blackbox.eventually, timeout=90.0, interval=2.0)


@pytest.fixture(scope="module")
def collector(cluster: Any) -> str:
    """The name of the collector's Deployment and Service, once it is available."""
    name = cluster.kubectl(
        "get", "deploy", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=otel-collector",
        "-o", "jsonpath={.items[*].metadata.name}",
    ).strip()  # fmt: skip
    assert name and " " not in name, f"one collector Deployment expected, found {name!r}"
    cluster.kubectl("rollout", "status", "-n", NAMESPACE, f"deploy/{name}", "--timeout=120s", timeout=150)
    return name


@pytest.fixture
def api(cluster: Any) -> Iterator[httpx.Client]:
    with user_client(cluster.api_url, JWT_SECRET, timeout=60) as c:
        yield c


def test_one_traceparent_is_followed_through_both_sidecars_and_kafka_into_audit(
    cluster: Any, collector: str, api: httpx.Client
) -> None:
    """A known traceparent through Traefik: the in-cluster collector's output (its stdout, read with
    kubectl logs) then holds spans of that trace from tasks-api, its daprd, audit and audit's daprd."""
    import otelcol

    trace_id = secrets.token_hex(16)
    resp = api.post(
        "/v1/tasks", json={"title": "traced"}, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["traceresponse"].split("-")[1] == trace_id

    want = {("tasks-api", "app"), ("tasks-api", "daprd"), ("audit", "app"), ("audit", "daprd")}

    def sources() -> set[tuple[str, str]] | None:
        """(service.name, 'app' or 'daprd') of every span of the trace the collector wrote."""
        logs = cluster.kubectl("logs", "-n", NAMESPACE, f"deploy/{collector}", timeout=60)
        found = {
            (s["service"], "app" if s["scope"].startswith(("taskflow", "opentelemetry")) else "daprd")
            for s in otelcol.spans_of(otelcol.parse_lines(logs.splitlines()))
            if s["traceId"] == trace_id
        }
        print(f"[telemetry] spans of the trace so far: {sorted(found)}", flush=True)
        return found if want <= found else None

    eventually(sources)


def _scrape(cluster: Any, collector: str) -> str:
    """The collector's Prometheus exporter, through the API server's service proxy (what the
    ServiceMonitor's port `prometheus` serves)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/services/{collector}:prometheus/proxy/metrics"
    return str(cluster.kubectl("get", "--raw", path, timeout=30))


def test_the_collector_serves_the_functions_metrics_to_prometheus(
    cluster: Any, collector: str, api: httpx.Client
) -> None:
    assert api.post("/v1/tasks", json={"title": "counted"}).status_code == 201

    def pushed() -> str | None:
        text = _scrape(cluster, collector)
        ok = (
            'http_server_request_duration_seconds_count{http_request_method="POST"' in text
            and 'job="tasks-api"' in text
            and any(
                line.startswith("taskflow_events_processed_total{")
                and 'job="audit"' in line
                and 'outcome="success"' in line
                for line in text.splitlines()
            )
        )
        return text if ok else None

    text = eventually(pushed)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("taskflow_")}
    print(f"[telemetry] taskflow_* metrics the collector serves: {sorted(names)}", flush=True)
    # each pod is its own instance, so two replicas of one function never write the same series
    assert 'instance="tasks-api-' in text


def test_daprd_serves_its_metrics_on_the_port_the_podmonitor_names(cluster: Any) -> None:
    out = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", "serving.knative.dev/service=audit", "-o", "json")
    pod = next(p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp"))
    daprd = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")
    ports = {p.get("name"): p["containerPort"] for p in daprd.get("ports", [])}
    assert "dapr-metrics" in ports, ports  # the chart's PodMonitor scrapes this port name
    name = pod["metadata"]["name"]
    text = cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}:{ports['dapr-metrics']}/proxy/metrics"
    )
    assert "dapr_component_pubsub_ingress_count" in text or "dapr_runtime_component_loaded" in text


def _selected(cluster: Any, kind: str, match: dict[str, str]) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in match.items())
    return list(json.loads(cluster.kubectl("get", kind, "-n", NAMESPACE, "-l", selector, "-o", "json"))["items"])


def test_the_monitors_select_the_collector_and_every_daprd(cluster: Any, collector: str) -> None:
    """The chart's ServiceMonitor and PodMonitor, created for real (prometheus-operator's CRDs, no
    operator), select what serves the metrics: the collector's Service and its `prometheus` port;
    every function pod, whose daprd has the named metrics port."""
    monitors = json.loads(cluster.kubectl("get", "servicemonitors,podmonitors", "-n", NAMESPACE, "-o", "json"))
    by_kind = {m["kind"]: m for m in monitors["items"]}
    sm, pm = by_kind["ServiceMonitor"], by_kind["PodMonitor"]
    services = _selected(cluster, "services", sm["spec"]["selector"]["matchLabels"])
    assert [s["metadata"]["name"] for s in services] == [collector]
    port_names = {p["name"] for p in services[0]["spec"]["ports"]}
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= port_names
    pods = [p for p in _selected(cluster, "pods", pm["spec"]["selector"]["matchLabels"]) if "daprd" in str(p)]
    apps = {p["metadata"]["labels"].get("serving.knative.dev/service") for p in pods}
    assert {"tasks-api", "audit"} <= apps
    wanted = {e["port"] for e in pm["spec"]["podMetricsEndpoints"]}
    for pod in pods:
        daprd = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")
        assert wanted <= {p.get("name") for p in daprd.get("ports", [])}, pod["metadata"]["name"]
    rules = json.loads(cluster.kubectl("get", "prometheusrules", "-n", NAMESPACE, "-o", "json"))["items"]
    assert len(rules) == 1 and rules[0]["spec"]["groups"][0]["rules"]
