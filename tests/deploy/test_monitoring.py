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
