"""The chart's monitoring (monitoring.enabled): every alert unit-tested with promtool (built from the
Prometheus Go module by tools/bootstrap.py), every alert with a runbook, and every metric that a
dashboard panel or an alert names is one the code emits (parsed with promql-parser), or one of the
named upstream metrics of Dapr, Knative and kube-state-metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import bootstrap  # noqa: E402

pytestmark = pytest.mark.helm

HERE = Path(__file__).resolve().parent
#: Metrics of other components that the dashboard and alerts read, with where they come from.
UPSTREAM = {
    # daprd (github.com/dapr/dapr pkg/diagnostics/component_monitoring.go, "dapr_" prefix)
    "dapr_component_pubsub_egress_count": "daprd",
    "dapr_component_pubsub_ingress_count": "daprd",
    # Knative Serving's autoscaler (pkg/reconciler/autoscaling/kpa/metrics.go, "autoscaler_" prefix)
    "autoscaler_actual_pods": "Knative autoscaler",
    # kube-state-metrics (part of kube-prometheus-stack)
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}


@pytest.fixture(scope="module")
def monitoring() -> dict[str, Any]:
    if not bootstrap.HELM.exists():
        pytest.skip("helm is not built (python tools/bootstrap.py helm)")
    chart = str(ROOT / "helm" / "taskflow")
    out = subprocess.run(
        [
            str(bootstrap.HELM),
            "template",
            "taskflow",
            chart,
            "--namespace",
            "taskflow",
            "--set",
            "monitoring.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objs = {d["kind"]: d for d in yaml.safe_load_all(out) if d and d.get("kind") in {"PrometheusRule", "ConfigMap"}}
    return {"rule": objs["PrometheusRule"], "dashboard": json.loads(_dashboard_configmap(out)["data"]["taskflow.json"])}


def _dashboard_configmap(rendered: str) -> dict[str, Any]:
    for d in yaml.safe_load_all(rendered):
        if d and d.get("kind") == "ConfigMap" and "taskflow.json" in (d.get("data") or {}):
            assert d["metadata"]["labels"]["grafana_dashboard"] == "1"
            return dict(d)
    raise AssertionError("no dashboard ConfigMap")


def _alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_passes_its_promtool_unit_tests(monitoring: dict[str, Any], tmp_path: Path) -> None:
    if not bootstrap.PROMTOOL.exists():
        pytest.skip("promtool is not built (python tools/bootstrap.py promtool)")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": monitoring["rule"]["spec"]["groups"]}))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    tested = {
        t["alertname"]
        for case in yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert tested == {a["alert"] for a in _alerts(monitoring["rule"])}, "every alert needs a promtool test"
    check = subprocess.run(
        [str(bootstrap.PROMTOOL), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [str(bootstrap.PROMTOOL), "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_has_a_runbook_in_docs_operations(monitoring: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    headings = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    for alert in _alerts(monitoring["rule"]):
        assert alert["alert"].lower() in headings, f"docs/operations.md has no section {alert['alert']}"
        anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == alert["alert"].lower()


def _metric_names(expr: str) -> set[str]:
    import promql_parser

    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (int, float, str)):
                visit(child)
        for arg in getattr(node, "args", None) or []:
            visit(arg)

    visit(promql_parser.parse(expr.replace("$namespace", "taskflow")))
    return names


def _emitted() -> set[str]:
    """Every sample name TaskFlow's code exports, from a real scrape of its Prometheus exporter after
    each instrument recorded once."""
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from taskflow import observability, telemetry

    observability.setup("taskflow")
    ins = telemetry.instruments()
    for name, instrument in vars(ins).items():
        if hasattr(instrument, "add"):
            instrument.add(1)
        elif hasattr(instrument, "record"):
            instrument.record(0.1)
        else:
            instrument.set(1)
        assert name
    text = generate_latest(REGISTRY).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_every_metric_in_the_dashboard_and_the_alerts_is_emitted(monitoring: dict[str, Any]) -> None:
    exprs = [a["expr"] for a in _alerts(monitoring["rule"])]
    exprs += [t["expr"] for p in monitoring["dashboard"]["panels"] for t in p["targets"]]
    named = set().union(*(_metric_names(e) for e in exprs))
    emitted = _emitted()
    unknown = sorted(n for n in named if n not in emitted and n not in UPSTREAM)
    assert not unknown, f"named in dashboards/alerts but emitted by nothing: {unknown}"
    ours = {n for n in named if n.startswith(("taskflow_", "http_server_"))}
    assert {"http_server_request_duration_seconds_count", "taskflow_outbox_oldest_age_seconds"} <= ours


def test_the_check_sees_a_metric_nobody_emits() -> None:
    assert _metric_names('sum(rate(taskflow_made_up_total{app="x"}[5m])) / on() group_left max(up)') == {
        "taskflow_made_up_total",
        "up",
    }
    assert "taskflow_made_up_total" not in _emitted()


# --- the chart's own collector (monitoring.collector.enabled) --------------------------------


def _render(*sets: str) -> list[dict[str, Any]]:
    if not bootstrap.HELM.exists():
        pytest.skip("helm is not built (python tools/bootstrap.py helm)")
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run(
        [
            str(bootstrap.HELM),
            "template",
            "taskflow",
            str(ROOT / "helm" / "taskflow"),
            "--namespace",
            "taskflow",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _function_env(objs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """app id -> the function container's plain env values."""
    out = {}
    for o in objs:
        if o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative"):
            c = o["spec"]["template"]["spec"]["containers"][0]
            out[o["metadata"]["name"]] = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    return out


def test_the_collector_receives_from_every_function_and_daprd_and_is_scraped(tmp_path: Path) -> None:
    objs = _render("monitoring.collector.enabled=true", "monitoring.enabled=true")
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    svc = next(
        o
        for o in objs
        if o["kind"] == "Service" and o["apiVersion"] == "v1" and "otel-collector" in o["metadata"]["name"]
    )
    deploy = by_kind[("Deployment", svc["metadata"]["name"])]
    name, ns = svc["metadata"]["name"], "taskflow"
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "prometheus": 8889}
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    # the image built by tools/images.py from tools/otelcol, at the builder's version
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f"/otelcol-taskflow:{bootstrap.OTELCOL_VERSION}")
    # every function pushes OTLP/HTTP to it; every daprd sends its spans over OTLP/gRPC
    envs = _function_env(objs)
    assert len(envs) >= 7
    for app, env in envs.items():
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{name}.{ns}.svc:4318", app
        assert env["OTEL_SERVICE_NAME"] == app
    dapr_cfg = next(o for o in objs if o["kind"] == "Configuration" and o["apiVersion"].startswith("dapr.io"))
    assert dapr_cfg["spec"]["tracing"]["otel"]["endpointAddress"] == f"{name}.{ns}.svc:4317"
    # Prometheus scrapes the collector's exporter through the ServiceMonitor
    monitor = next(o for o in objs if o["kind"] == "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [ns]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["prometheus"]
    # the restricted Pod Security Standard, as the namespace enforces
    sc = deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    # the configuration is one the collector itself accepts
    config = by_kind[("ConfigMap", name)]["data"]["config.yaml"]
    if not bootstrap.OTELCOL.exists():
        pytest.skip("the collector is not built (python tools/bootstrap.py otelcol)")
    (tmp_path / "config.yaml").write_text(config)
    res = subprocess.run(
        [str(bootstrap.OTELCOL), "validate", "--config", f"file:{tmp_path / 'config.yaml'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_collector_alone_needs_no_prometheus_operator() -> None:
    objs = _render("monitoring.collector.enabled=true")
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "ConfigMap"} <= kinds
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert all(e["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(".taskflow.svc:4318") for e in _function_env(objs).values())


def test_without_the_collector_the_functions_use_the_operators_endpoints() -> None:
    objs = _render("monitoring.enabled=true")
    assert not [o for o in objs if "otel-collector" in o["metadata"]["name"] and o["kind"] == "Deployment"]
    for env in _function_env(objs).values():
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring.svc:4318"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in next(iter(_function_env(_render()).values()))


def test_prometheus_may_reach_daprds_metrics_port_and_nothing_else() -> None:
    """The PodMonitor scrapes daprd on the function pods, which the functions' NetworkPolicy guards."""
    rules = {
        o["metadata"]["name"]: o["spec"]["ingress"]
        for o in _render("monitoring.enabled=true", "monitoring.prometheusNamespace=prom")
        if o["kind"] == "NetworkPolicy"
    }
    ingress = next(r for name, r in rules.items() if name.endswith("-functions"))
    prom = [
        rule
        for rule in ingress
        if any(
            "prom" in (e.get("values") or [])
            for p in rule["from"]
            for e in p.get("namespaceSelector", {}).get("matchExpressions", [])
        )
    ]
    assert [r["ports"] for r in prom] == [[{"protocol": "TCP", "port": 9095}]]
    off = [o for o in _render() if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-functions")]
    assert all("ports" not in rule for rule in off[0]["spec"]["ingress"])
