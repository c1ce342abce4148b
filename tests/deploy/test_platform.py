"""The platform manifests the cluster applies (tools/cluster_platform.py), checked offline: Knative
Serving from the knative.dev/serving module and Dapr's control plane from Dapr's Helm chart, both
naming only images that tools/images.py builds.

Needs go (the Go module cache, filled from the module proxy when cold) and helm (tools/bootstrap.py).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.toolmodules import load_tool

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))


cp = load_tool("cluster_platform")
images = load_tool("images")
cc = load_tool("check_chart")

pytestmark = pytest.mark.helm

if shutil.which("go") is None:
    if os.environ.get("CI"):
        raise RuntimeError("go not found: CI builds daprd and helm with it")
    pytest.skip("go not found (the platform manifests come from Go modules)", allow_module_level=True)


def _objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


@pytest.fixture(scope="module")
def knative() -> str:
    return str(cp.render_knative_serving())


@pytest.fixture(scope="module")
def dapr() -> str:
    return str(cp.render_dapr_control_plane())


def test_knative_serving_runs_only_images_built_here(knative: str) -> None:
    assert "ko://" not in knative
    refs = cp.image_refs(knative)
    assert refs == {images.ref(n) for n in images.GROUPS["knative"]}
    objs = _objects(knative)
    for obj in objs:
        for c in _containers(obj):
            assert c["image"] in refs, (obj["metadata"]["name"], c["image"])
    deployment = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-deployment")
    assert deployment["data"]["queue-sidecar-image"] == images.ref("knative-queue")
    # Knative skips tag-to-digest resolution for dev.local: our images have no registry to resolve in
    assert "dev.local" in deployment["data"].get("registries-skipping-tag-resolving", "kind.local,ko.local,dev.local")


def test_knative_serving_is_complete_and_crds_come_first(knative: str) -> None:
    objs = _objects(knative)
    crds = {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    # Serving's own, and those its repository links from knative.dev/networking and knative.dev/caching
    assert {
        "services.serving.knative.dev",
        "revisions.serving.knative.dev",
        "routes.serving.knative.dev",
        "configurations.serving.knative.dev",
        "podautoscalers.autoscaling.internal.knative.dev",
        "ingresses.networking.internal.knative.dev",
        "serverlessservices.networking.internal.knative.dev",
        "certificates.networking.internal.knative.dev",
        "images.caching.internal.knative.dev",
    } <= crds
    deployments = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}
    assert deployments == {"activator", "autoscaler", "controller", "webhook"}
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    assert {"config-network", "config-features", "config-deployment", "config-autoscaler"} <= configmaps
    kinds = [o["kind"] for o in objs]
    last_crd = max(i for i, k in enumerate(kinds) if k == "CustomResourceDefinition")
    assert last_crd < kinds.index("Image"), "the Image resource needs its CRD applied first"
    crd_text, rest = cp.split_crds(knative)
    assert {o["kind"] for o in _objects(crd_text)} == {"CustomResourceDefinition"}
    assert "CustomResourceDefinition" not in {o["kind"] for o in _objects(rest)}
    assert len(_objects(crd_text)) + len(_objects(rest)) == len(objs)


def test_knative_config_is_what_the_chart_needs(knative: str) -> None:
    """The functions mount an emptyDir at /tmp: Knative refuses it unless the feature is enabled."""
    features = next(
        o for o in _objects(knative) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-features"
    )
    assert features["data"]["kubernetes.podspec-volumes-emptydir"] == "enabled"
    assert "_example" in features["data"]  # the webhook checks the example block's checksum
    text = cp.render_knative_serving(config={"config-autoscaler": {"stable-window": "20s"}}, crds=False)
    autoscaler = next(
        o for o in _objects(text) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-autoscaler"
    )
    assert autoscaler["data"]["stable-window"] == "20s"


def test_dapr_control_plane_uses_local_images_and_no_placement_or_scheduler(dapr: str) -> None:
    objs = _objects(dapr)
    assert cp.image_refs(dapr) == {images.ref(n) for n in images.GROUPS["dapr"]}
    workloads = {o["metadata"]["name"]: o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}}
    assert set(workloads) == {"dapr-operator", "dapr-sidecar-injector", "dapr-sentry"}
    for name, obj in workloads.items():
        for c in _containers(obj):
            assert c["image"] in cp.image_refs(dapr), name
            assert c["imagePullPolicy"] == "IfNotPresent", name
    injector = _containers(workloads["dapr-sidecar-injector"])[0]
    env = {e["name"]: e.get("value") for e in injector["env"]}
    assert env["SIDECAR_IMAGE"] == images.ref("daprd")
    assert env["SIDECAR_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert env["SIDECAR_DROP_ALL_CAPABILITIES"] == "true"
    config = next(o for o in objs if o["kind"] == "Configuration")
    assert config["spec"]["mtls"]["enabled"] is True
    crds = {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert {"components.dapr.io", "configurations.dapr.io", "subscriptions.dapr.io", "resiliencies.dapr.io"} <= crds
    for obj in objs:
        if obj["kind"] in {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap"}:
            # upstream's one exception: the secret-reader Role(Binding) for apps in the default namespace
            expected = "default" if obj["metadata"]["name"].endswith("secret-reader") else cp.DAPR_NAMESPACE
            assert obj["metadata"].get("namespace") == expected, obj["metadata"]["name"]


def test_every_platform_image_is_one_images_py_builds_from_a_binary(knative: str, dapr: str) -> None:
    assert cp.check(knative) == [] and cp.check(dapr) == []
    by_ref = {img.ref: img for img in images.images().values()}
    for ref in cp.image_refs(knative) | cp.image_refs(dapr):
        assert by_ref[ref].binaries, f"{ref} is not built from one of our Go binaries"
    assert cp.check("image: docker.io/library/nginx:latest\n") == [
        "image docker.io/library/nginx:latest is not built by tools/images.py"
    ]


@pytest.mark.parametrize("which", ["knative", "dapr"])
def test_every_object_is_valid_kubernetes_or_valid_against_its_crd(which: str, knative: str, dapr: str) -> None:
    """Built-in kinds (CRDs included) against Kubernetes' own schemas, strictly (no unknown field);
    the custom resources shipped alongside (Knative's Image and Certificate, Dapr's Configuration)
    against the openAPIV3Schema of their CRD in the same manifest."""
    objs = _objects(knative if which == "knative" else dapr)
    schemas = {
        (f"{o['spec']['group']}/{v['name']}", o["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for o in objs
        if o["kind"] == "CustomResourceDefinition"
        for v in o["spec"]["versions"]
    }
    errors, custom = [], 0
    for obj in objs:
        ref = f"{obj['kind']} {obj['metadata']['name']}"
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        if schema is not None:
            custom += 1
            errors += [f"{ref}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, cc.KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{ref}: {'.'.join(str(p) for p in e.path)}: {e.message}")
    assert errors == []
    assert custom >= 1
