"""The Helm chart, rendered and validated offline: every values file x eventDelivery x knative.enabled.

Needs the helm binary and the upstream CRDs: `python tools/bootstrap.py helm crds` builds helm into
.cache/bin and copies the CRDs, from pinned Go modules and Maven Central, into .cache/crds (tools/crds.py).
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.toolmodules import load_tool

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))


cc = load_tool("check_chart")
rm = load_tool("render_manifests")

pytestmark = pytest.mark.helm

if cc.find_helm() is None:
    if os.environ.get("CI"):
        raise RuntimeError("helm not found: CI must run tools/bootstrap.py first")
    pytest.skip("helm not found (run tools/bootstrap.py)", allow_module_level=True)
try:
    CRD_MANIFEST = cc.crd_manifest()
except cc.ChartError as exc:
    if os.environ.get("CI"):
        raise
    pytest.skip(str(exc), allow_module_level=True)

VARIANTS = cc.variants()
IDS = [str(v).replace("/", "-") for v in VARIANTS]


@pytest.fixture(scope="module")
def rendered() -> dict[Any, tuple[str, list[dict[str, Any]]]]:
    cache: dict[Any, tuple[str, list[dict[str, Any]]]] = {}
    return cache


def _render(cache: dict[Any, Any], variant: Any, sentinels: bool = False) -> tuple[str, list[dict[str, Any]]]:
    key = (variant, sentinels)
    if key not in cache:
        cache[key] = cc.render(variant, with_sentinels=sentinels)
    return cache[key]


@pytest.mark.parametrize("values_file", cc.VALUES_FILES, ids=lambda f: f or "values.yaml")
def test_helm_lint_strict(values_file: str | None) -> None:
    cc.lint(values_file)


def test_every_value_has_a_comment() -> None:
    assert cc.check_values_comments() == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_objects_match_upstream_schemas(rendered: Any, variant: Any) -> None:
    _, objs = _render(rendered, variant)
    _, secret_objs = _render(rendered, variant, sentinels=True)
    assert objs
    assert cc.validate_all(objs) == []
    assert cc.validate_all(secret_objs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_dapr_wiring_and_scaling(rendered: Any, variant: Any) -> None:
    _, objs = _render(rendered, variant)
    assert cc.check_contract(variant, objs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_pod_is_restricted(rendered: Any, variant: Any) -> None:
    _, objs = _render(rendered, variant)
    _, secret_objs = _render(rendered, variant, sentinels=True)
    assert cc.check_restricted(objs) == []
    assert cc.check_restricted(secret_objs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_no_secret_value_in_plain_text(rendered: Any, variant: Any) -> None:
    text, objs = _render(rendered, variant, sentinels=True)
    assert cc.check_no_plaintext_secrets(text, objs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_knative_admits_the_functions_with_its_default_feature_flags(rendered: Any, variant: Any) -> None:
    """A default Knative install (no config-features changes) must accept every Knative Service."""
    _, objs = _render(rendered, variant)
    assert cc.check_knative_defaults(objs) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_migrations_run_before_any_function_starts(rendered: Any, variant: Any) -> None:
    """The migration Job is a pre-install/pre-upgrade hook and what it needs (its Secret, the in-cluster
    PostgreSQL) is a lighter hook: daprd's configuration store needs the schema when the functions start."""
    _, objs = _render(rendered, variant)
    _, secret_objs = _render(rendered, variant, sentinels=True)
    assert cc.check_hook_order(objs) == []
    assert cc.check_hook_order(secret_objs) == []


def _annotations(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    obj = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)
    return obj["metadata"].setdefault("annotations", {})  # type: ignore[no-any-return]


def test_hook_order_check_catches_what_broke_a_fresh_install(rendered: Any) -> None:
    """Mutations: the post-install Job the real cluster failed with, a Secret or the in-cluster database
    that Helm would create only after the hooks, and a ServiceAccount the Job cannot have yet."""
    variant = cc.Variant("values-minikube.yaml", "dapr", True)
    objs = copy.deepcopy(_render(rendered, variant, sentinels=True)[1])
    assert cc.check_hook_order(objs) == []
    _annotations(objs, "Job", "taskflow-migrate")["helm.sh/hook"] = "post-install,pre-upgrade"
    assert ["must be a pre-install,pre-upgrade hook" in e for e in cc.check_hook_order(objs)] == [True]

    objs = copy.deepcopy(_render(rendered, variant, sentinels=True)[1])
    del _annotations(objs, "Secret", "taskflow-migrate")["helm.sh/hook"]
    _annotations(objs, "StatefulSet", "taskflow-postgresql")["helm.sh/hook-weight"] = "5"
    job = next(o for o in objs if o["kind"] == "Job")
    job["spec"]["template"]["spec"]["serviceAccountName"] = "taskflow"
    errors = "\n".join(cc.check_hook_order(objs))
    assert "needs Secret/taskflow-migrate (env TASKFLOW_DATABASE_URL)" in errors
    assert "needs StatefulSet/taskflow-postgresql (the in-cluster database)" in errors
    assert "needs ServiceAccount/taskflow (its ServiceAccount)" in errors


@pytest.mark.parametrize("entry", CRD_MANIFEST["crds"], ids=lambda e: e["file"] if isinstance(e, dict) else str(e))
def test_cached_crd_is_the_upstream_file(entry: dict[str, Any]) -> None:
    """Each cached CRD is byte for byte what tools/crds.py copied from its pinned source."""
    import hashlib

    if "sha256" not in entry:  # $TASKFLOW_CRD_DIR pointing at a plain directory of CRDs
        pytest.skip(f"{entry['file']}: no manifest to compare with")
    data = (cc.crd_dir() / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['file']} changed since {entry['source']}"


@pytest.mark.parametrize(
    "entry",
    CRD_MANIFEST["skipped"] or [None],
    ids=lambda e: " ".join(e["kinds"]) if isinstance(e, dict) else "none",
)
def test_upstream_crds_not_available(entry: dict[str, Any] | None) -> None:
    """A kind whose upstream CRD no registry serves is not schema-checked: say so, visibly."""
    if entry is None:
        return
    covered = [k for k in entry["kinds"] if tuple(k.split(" ")) in cc.FALLBACK_SCHEMAS]
    note = f" ({', '.join(covered)}: checked against the schema written in check_chart.py)" if covered else ""
    pytest.skip(f"no upstream CRD for {', '.join(entry['kinds'])}{note}: {entry['source']}: {entry['reason']}")


def test_knative_manifests_are_up_to_date() -> None:
    assert rm.stale_files() == []


def test_default_values_render_no_secret() -> None:
    """Defaults are empty: no Secret object unless values are given."""
    objs = cc.parse(cc.render_text(None))
    assert [o for o in objs if o["kind"] == "Secret"] == []


def test_consumer_cannot_scale_to_zero_with_dapr_delivery() -> None:
    with pytest.raises(cc.ChartError, match="minScale must be >= 1"):
        cc.render_text(None, extra=["--set", "functions.audit.minScale=0"])


def test_schema_rejects_queue_proxy_metrics_port() -> None:
    with pytest.raises(cc.ChartError, match="metricsPort"):
        cc.render_text(None, extra=["--set", "dapr.metricsPort=9090"])


def test_schema_requires_a_dead_letter_uri_when_asked_for_one() -> None:
    with pytest.raises(cc.ChartError, match="deadLetterSinkUri"):
        cc.render_text(None, {"eventDelivery": "knative", "eventing.deadLetter": "uri"})


def test_kafka_sink_credentials_are_rendered_in_eventing_kafkas_format() -> None:
    """The chart's Kafka Secret also carries the keys a KafkaSink reads (base64, in Secret data only)."""
    import base64

    sets = {
        "eventDelivery": "knative",
        "kafka.auth.type": "password",
        "kafka.auth.saslUsername": "dlq-user",
        "kafka.auth.saslPassword": "dlq-pass",
    }
    objs = cc.parse(cc.render_text(None, sets))
    secret = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"].endswith("kafka-auth"))
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["protocol"] == "SASL_SSL" and data["sasl.mechanism"] == "SCRAM-SHA-512"
    assert data["user"] == "dlq-user" and data["password"] == "dlq-pass"
    sinks = [o for o in objs if o["kind"] == "KafkaSink"]
    assert sinks and all(o["spec"]["auth"]["secret"]["ref"]["name"] == secret["metadata"]["name"] for o in sinks)


def _components(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Component"}


def test_the_object_store_binding_for_s3_spaces_and_gcs() -> None:
    """No bucket, no binding; with one, bindings.aws.s3 with keys from the Kubernetes Secret."""
    assert "taskflow-objects" not in _components(cc.parse(cc.render_text(None)))
    sets = {
        "objectStore.bucket": "taskflow-data",
        "objectStore.region": "fra1",
        "objectStore.endpoint": "https://fra1.digitaloceanspaces.com",
    }
    comps = _components(cc.parse(cc.render_text(None, sets)))
    s3 = comps["taskflow-objects"]
    meta = {m["name"]: m for m in s3["spec"]["metadata"]}
    assert s3["spec"]["type"] == "bindings.aws.s3" and s3["auth"]["secretStore"] == "kubernetes"
    assert meta["endpoint"]["value"] == "https://fra1.digitaloceanspaces.com" and meta["region"]["value"] == "fra1"
    assert meta["accessKey"]["secretKeyRef"] == {"name": "taskflow-secrets", "key": "s3-access-key"}
    assert "taskflow-aws-secrets" not in comps
    assert cc._check_object_store(comps) == []


def test_values_cloud_takes_the_s3_keys_from_aws_secrets_manager() -> None:
    comps = _components(cc.parse(cc.render_text("values-cloud.yaml")))
    aws = comps["taskflow-aws-secrets"]
    assert aws["spec"]["type"] == "secretstores.aws.secretmanager"
    assert {m["name"] for m in aws["spec"]["metadata"]} == {"region"}  # no static keys: IRSA
    s3 = comps["taskflow-objects"]
    assert s3["auth"]["secretStore"] == "taskflow-aws-secrets"
    meta = {m["name"]: m for m in s3["spec"]["metadata"]}
    assert meta["secretKey"]["secretKeyRef"] == {"name": "s3-secret-key", "key": "s3-secret-key"}
    assert cc._check_object_store(comps) == []
    broken = copy.deepcopy(comps)
    broken["taskflow-objects"]["spec"]["metadata"].append({"name": "accessKey", "value": "plain"})
    del broken["taskflow-aws-secrets"]
    findings = cc._check_object_store(broken)
    assert any("secretKeyRef" in f for f in findings) and any("AWS Secrets Manager" in f for f in findings)


# ---- the checks themselves must bite: break a rendered object, expect a finding ----


def _pods(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service" and "serving" in o["apiVersion"]}


@pytest.fixture()
def dapr_objs(rendered: Any) -> tuple[Any, list[dict[str, Any]]]:
    variant = cc.Variant(None, "dapr", True)
    return variant, copy.deepcopy(_render(rendered, variant)[1])


def test_check_catches_writable_root(dapr_objs: Any) -> None:
    _, objs = dapr_objs
    _pods(objs)["audit"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = (
        False
    )
    assert any("readOnlyRootFilesystem" in e for e in cc.check_restricted(objs))


def test_check_catches_a_pod_security_context_knative_refuses(dapr_objs: Any) -> None:
    """Mutation: the pod-level securityContext a real Knative webhook refused must fail the check."""
    _, objs = dapr_objs
    assert cc.check_knative_defaults(objs) == []
    _pods(objs)["audit"]["spec"]["template"]["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    errors = cc.check_knative_defaults(objs)
    assert errors == [
        "Service/audit: must not set the field(s): spec.template.spec.securityContext "
        "[needs kubernetes.podspec-securitycontext; secure-pod-defaults admits seccompProfile only]"
    ]


def test_check_catches_daprd_without_a_seccomp_profile(dapr_objs: Any) -> None:
    """daprd's seccomp profile comes only from the annotation (no pod-level one in a Knative pod)."""
    variant, objs = dapr_objs
    del _pods(objs)["audit"]["spec"]["template"]["metadata"]["annotations"]["dapr.io/sidecar-seccomp-profile-type"]
    assert any("sidecar-seccomp-profile-type" in e for e in cc.check_contract(variant, objs))


def test_check_catches_other_fields_knative_refuses_by_default(dapr_objs: Any) -> None:
    _, objs = dapr_objs
    spec = _pods(objs)["notifier"]["spec"]["template"]["spec"]
    spec["nodeSelector"] = {"disk": "ssd"}
    spec["containers"][0]["securityContext"]["privileged"] = False
    spec["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    spec["containers"][0]["env"].append({"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    errors = "\n".join(cc.check_knative_defaults(objs))
    assert "spec.template.spec.nodeSelector [needs kubernetes.podspec-nodeselector]" in errors
    assert "containers[0].securityContext.privileged" in errors
    assert "capabilities.add [needs kubernetes.containerspec-addcapabilities]" in errors
    assert "valueFrom.fieldRef [needs kubernetes.podspec-fieldref]" in errors


def test_a_chart_with_a_pod_security_context_fails_the_knative_check(tmp_path: Path) -> None:
    """Mutation on the template: put the pod-level securityContext back and render."""
    chart = tmp_path / "taskflow"
    shutil.copytree(cc.CHART, chart)
    tpl = chart / "templates" / "functions-knative.yaml"
    text = tpl.read_text()
    assert "securityContext:\n" not in text
    tpl.write_text(
        text.replace("      containers:\n", "      securityContext:\n        runAsNonRoot: true\n      containers:\n")
    )
    objs = cc.parse(cc.render_text(None, chart=chart))
    errors = cc.check_knative_defaults(objs)
    assert len(errors) == len(cc.APP_IDS) and all("spec.template.spec.securityContext" in e for e in errors)
    assert cc.check_restricted(objs) == []  # still "restricted": only Knative's admission tells the difference


def test_knative_values_that_need_a_feature_flag_are_caught() -> None:
    objs = cc.parse(
        cc.render_text(None, extra=["--set", "tolerations[0].key=spot", "--set", "tolerations[0].operator=Exists"])
    )
    errors = cc.check_knative_defaults(objs)
    assert errors and all("tolerations [needs kubernetes.podspec-tolerations]" in e for e in errors)


def test_pingsource_schema_is_upstreams(knative_objs: Any) -> None:
    """PingSource is validated against knative.dev/eventing's CRD: a misspelt field is refused."""
    _, objs = knative_objs
    ping = next(o for o in objs if o["kind"] == "PingSource")
    assert cc.validate_all([ping]) == []
    ping["spec"]["scheduel"] = ping["spec"].pop("schedule")
    assert any("scheduel" in e for e in cc.validate_all([ping]))


def test_strimzi_schema_is_upstreams(rendered: Any) -> None:
    """Strimzi's Kafka, KafkaNodePool and KafkaTopic are validated against Strimzi's generated CRDs."""
    why = cc.skipped_kinds().get(("kafka.strimzi.io/v1", "KafkaNodePool"))
    if why:
        pytest.skip(f"no Strimzi CRDs: {why}")
    _, objs = _render(rendered, cc.Variant("values-minikube.yaml", "dapr", True))
    pool = copy.deepcopy(next(o for o in objs if o["kind"] == "KafkaNodePool"))
    assert cc.validate_all([pool]) == []
    pool["spec"]["replica"] = pool["spec"].pop("replicas")
    assert any("replica" in e for e in cc.validate_all([pool]))


def test_check_catches_metrics_port_9090(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    _pods(objs)["notifier"]["spec"]["template"]["metadata"]["annotations"]["dapr.io/metrics-port"] = "9090"
    assert any("metrics-port" in e for e in cc.check_contract(variant, objs))


def test_check_catches_consumer_at_zero(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    _pods(objs)["recurrence"]["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "0"
    assert any("min-scale" in e for e in cc.check_contract(variant, objs))


def test_check_catches_missing_dead_letter_topic(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    sub = next(o for o in objs if o["kind"] == "Subscription")
    del sub["spec"]["deadLetterTopic"]
    assert any("deadLetterTopic" in e for e in cc.check_contract(variant, objs))


def test_check_catches_dead_letter_topic_on_the_rules_only_subscription(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    sub = next(o for o in objs if o["kind"] == "Subscription" and o["scopes"] == ["recurrence"])
    sub["spec"]["deadLetterTopic"] = "task-events-dlq"
    assert any("rules-only" in e for e in cc.check_contract(variant, objs))


def test_check_catches_missing_routing_rule(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    sub = next(o for o in objs if o["kind"] == "Subscription" and o["scopes"] == ["recurrence"])
    sub["spec"]["routes"] = {"default": "/events/task-completed"}
    assert any("routing rule" in e for e in cc.check_contract(variant, objs))


def test_check_catches_sources_in_dapr_mode(dapr_objs: Any, rendered: Any) -> None:
    variant, objs = dapr_objs
    _, knative_objs = _render(rendered, cc.Variant(None, "knative", True))
    objs += [o for o in knative_objs if o["kind"] in {"KafkaSource", "PingSource"}]
    assert any("no KafkaSource or PingSource" in e for e in cc.check_contract(variant, objs))


@pytest.fixture()
def knative_objs(rendered: Any) -> tuple[Any, list[dict[str, Any]]]:
    variant = cc.Variant(None, "knative", True)
    return variant, copy.deepcopy(_render(rendered, variant)[1])


def _source(objs: list[dict[str, Any]], app: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "KafkaSource" and o["spec"]["sink"]["ref"]["name"] == app)


def test_knative_sources_dead_letter_to_kafka_sinks_on_the_dlq_topics(knative_objs: Any) -> None:
    """audit and notifier hand refused events to a KafkaSink writing <topic>-dlq; recurrence has none."""
    variant, objs = knative_objs
    sinks = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "KafkaSink"}
    for app, topic in (("audit", "task-events"), ("notifier", "reminders")):
        ref = _source(objs, app)["spec"]["delivery"]["deadLetterSink"]["ref"]
        assert ref["kind"] == "KafkaSink" and sinks[ref["name"]]["topic"] == f"{topic}-dlq"
        assert sinks[ref["name"]]["contentMode"] == "structured"
    assert "deadLetterSink" not in _source(objs, "recurrence")["spec"]["delivery"]
    assert not cc.check_contract(variant, objs)


def test_check_catches_a_knative_source_without_a_dead_letter_sink(knative_objs: Any) -> None:
    variant, objs = knative_objs
    del _source(objs, "audit")["spec"]["delivery"]["deadLetterSink"]
    assert any("deadLetterSink is required" in e for e in cc.check_contract(variant, objs))


def test_check_catches_a_kafka_sink_on_the_wrong_topic(knative_objs: Any) -> None:
    variant, objs = knative_objs
    sink = next(o for o in objs if o["kind"] == "KafkaSink" and o["spec"]["topic"] == "reminders-dlq")
    sink["spec"]["topic"] = "reminders"
    assert any("reminders-dlq" in e for e in cc.check_contract(variant, objs))


def test_check_catches_the_wrong_event_delivery_setting(knative_objs: Any) -> None:
    """With Knative delivery a function left on 'dapr' would answer poison events 200 DROP: lost."""
    variant, objs = knative_objs
    env = _pods(objs)["notifier"]["spec"]["template"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "TASKFLOW_EVENT_DELIVERY")["value"] = "dapr"
    assert any("TASKFLOW_EVENT_DELIVERY" in e for e in cc.check_contract(variant, objs))


def test_kafka_sink_schema_rejects_a_bad_content_mode(knative_objs: Any) -> None:
    _, objs = knative_objs
    sink = next(o for o in objs if o["kind"] == "KafkaSink")
    assert not cc.validate_all([sink])
    sink["spec"]["contentMode"] = "json"
    assert cc.validate_all([sink])


def test_check_catches_literal_secret_env(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    env = _pods(objs)["tasks-api"]["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "TASKFLOW_JWT_SECRET", "value": "hunter2"})
    assert any("literal value" in e for e in cc.check_contract(variant, objs))


def test_check_catches_plaintext_secret(rendered: Any) -> None:
    variant = cc.Variant(None, "dapr", True)
    text, objs = _render(rendered, variant, sentinels=True)
    objs = copy.deepcopy(objs)
    leak = cc.SENTINELS["secrets.jwtSecret"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leak"}, "data": {"jwt": leak}}
    assert cc.check_no_plaintext_secrets(text + f"\n---\n# {leak}\n", [*objs, cm])


def test_schema_validation_catches_unknown_and_wrong_fields(dapr_objs: Any) -> None:
    _, objs = dapr_objs
    sub = next(o for o in objs if o["kind"] == "Subscription")
    sub["spec"]["deadLetterTopc"] = "typo"
    ksvc = _pods(objs)["audit"]
    ksvc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    errors = cc.validate_all([sub, ksvc])
    assert any("deadLetterTopc" in e for e in errors)
    assert any("containerPort" in e or "'8080'" in e for e in errors)


def test_a_broken_chart_fails_the_checks(tmp_path: Path) -> None:
    """Edit a copy of the chart the way a regression would; the checks must notice."""
    chart = tmp_path / "taskflow"
    shutil.copytree(cc.CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    helpers.write_text(helpers.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    subs = chart / "templates" / "dapr-subscriptions.yaml"
    subs.write_text(subs.read_text().replace("  deadLetterTopic: {{ $fn.topic }}-dlq\n", ""))
    assert "deadLetterTopic: {{" not in subs.read_text()
    objs = cc.parse(cc.render_text(None, chart=chart))
    assert cc.check_restricted(objs)
    assert any("deadLetterTopic" in e for e in cc.check_contract(cc.Variant(None, "dapr", True), objs))


def test_a_request_timeout_above_knatives_maximum_is_refused_by_the_chart() -> None:
    """Knative's webhook refuses timeoutSeconds above max-revision-timeout-seconds (600 by default):
    the chart refuses it first, and admits it once told the cluster's raised maximum."""
    with pytest.raises(
        cc.ChartError, match=r"knative\.timeoutSeconds=601 exceeds knative\.maxRevisionTimeoutSeconds=600"
    ):
        cc.render_text(None, extra=["--set", "knative.timeoutSeconds=601"])
    objs = cc.parse(
        cc.render_text(
            None, extra=["--set", "knative.timeoutSeconds=3600", "--set", "knative.maxRevisionTimeoutSeconds=3600"]
        )
    )
    assert {o["spec"]["template"]["spec"]["timeoutSeconds"] for o in _pods(objs).values()} == {3600}


@pytest.mark.parametrize("delivery", cc.DELIVERIES)
def test_the_audit_archive_runs_daily_on_a_trigger_of_its_own(rendered: Any, delivery: str) -> None:
    """archive-cron (Dapr) or a PingSource of its own (Knative) posts /cron/archive to exports once a
    day; the exports' housekeeping keeps /cron every five minutes."""
    _, objs = _render(rendered, cc.Variant(None, delivery, True))
    if delivery == "dapr":
        crons = {
            o["metadata"]["name"]: {m["name"]: m["value"] for m in o["spec"]["metadata"]} | {"scope": o["scopes"]}
            for o in objs
            if o["kind"] == "Component" and o["spec"]["type"] == "bindings.cron"
        }
        assert crons["archive-cron"] == {
            "schedule": "@daily",
            "route": "/cron/archive",
            "direction": "input",
            "scope": ["exports"],
        }
        assert crons["exports-cron"]["schedule"] == "@every 5m" and crons["exports-cron"]["route"] == "/cron"
    else:
        pings = {
            (o["spec"]["sink"]["ref"]["name"], o["spec"]["sink"]["uri"]): o["spec"]["schedule"]
            for o in objs
            if o["kind"] == "PingSource"
        }
        assert pings[("exports", "/cron/archive")] == "17 3 * * *"  # minute 17 of 03:00, once a day
        assert pings[("exports", "/cron")] == "*/5 * * * *"


def test_check_catches_the_archive_on_the_housekeeping_route(dapr_objs: Any) -> None:
    variant, objs = dapr_objs
    cron = next(o for o in objs if o["kind"] == "Component" and o["metadata"]["name"] == "archive-cron")
    next(m for m in cron["spec"]["metadata"] if m["name"] == "route")["value"] = "/cron"
    assert any("archive-cron" in e and "/cron/archive" in e for e in cc.check_contract(variant, objs))
