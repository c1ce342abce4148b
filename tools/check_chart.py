"""Lint, render and validate the TaskFlow Helm chart offline (no cluster needed).

Every values file x eventDelivery (dapr, knative) x knative.enabled (true, false) is rendered
with `helm template`; every object is validated (core kinds with kubernetes-validate, CRD kinds
against the served version's openAPIV3Schema of the upstream CRDs that `tools/bootstrap.py crds`
copies into .cache/crds, see tools/crds.py) and checked against the deployment contract
(DESIGN §7-§8): Dapr wiring, scale to zero, restricted pods, what Knative Serving admits with its
default feature flags, no secret in plain text, and `knative/` up to date.

    python tools/check_chart.py            # everything; exit 1 on any problem
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from taskflow.functions import FUNCTIONS

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "taskflow"
KUBE_VERSION = "1.30.0"
RELEASE = "taskflow"
NAMESPACE = "taskflow"

VALUES_FILES: tuple[str | None, ...] = (None, "values-minikube.yaml", "values-cloud.yaml")
DELIVERIES = ("dapr", "knative")
KNATIVE = (True, False)

APP_IDS = tuple(f.app_id for f in FUNCTIONS)
CONSUMERS = {  # app-id -> (topic, route, routing-rule match or None)
    "notifier": ("reminders", "/events/reminders", None),
    "recurrence": ("task-events", "/events/task-completed", 'event.type == "com.taskflow.task.completed.v1"'),
    "audit": ("task-events", "/events/task-events", None),
    "exports": ("exports", "/events/exports", None),
}
# cron binding -> (function, route): exports has two, its housekeeping and the daily audit archive
CRON_BINDINGS = {
    "fanout-cron": ("event-fanout", "/cron"),
    "reminder-cron": ("reminder-dispatch", "/cron"),
    "exports-cron": ("exports", "/cron"),
    "archive-cron": ("exports", "/cron/archive"),
}
CRON_TRIGGERS = tuple(CRON_BINDINGS.values())
KNATIVE_RESERVED_PORTS = {"8012", "8013", "8022", "9090", "9091"}

#: Secret values passed with --set-string; they may appear only base64-encoded in Secret data.
SENTINELS: dict[str, str] = {
    "secrets.databaseUrl": "postgresql+pg8000://taskflow:tfsentinel-dbpass-81f2@db.example.test:5432/taskflow",
    "secrets.jwtSecret": "tfsentinel-jwt-3c9d",
    "secrets.webhookSigningKey": "tfsentinel-webhook-5e1a",
    "secrets.appApiToken": "tfsentinel-apptoken-77b0",
    "secrets.s3AccessKey": "tfsentinel-sthreeaccess-5b21",
    "secrets.s3SecretKey": "tfsentinel-sthreesecret-9d04",
    "postgresql.auth.password": "tfsentinel-pgpass-4d2e",
    "kafka.auth.saslUsername": "tfsentinel-kafkauser-19aa",
    "kafka.auth.saslPassword": "tfsentinel-kafkapass-62cc",
    "kafka.auth.caCert": "tfsentinel-cacert-0b7f",
    "kafka.auth.clientCert": "tfsentinel-clientcert-a3e8",
    "kafka.auth.clientKey": "tfsentinel-clientkey-d915",
}
#: Unique fragments of the sentinels: none may appear anywhere in plain text.


def _marker(key: str) -> str:
    match = re.search(r"tfsentinel-[a-z]+-[0-9a-f]+", SENTINELS[key])
    assert match
    return match.group(0)


SENTINEL_MARKERS = tuple(_marker(k) for k in SENTINELS)


class ChartError(Exception):
    """helm failed (lint or template)."""


# --------------------------------------------------------------------------- helm


def find_helm() -> str | None:
    """The helm binary: $HELM, the repo's .cache/bin/helm (tools/bootstrap.py), or PATH."""
    for candidate in (os.environ.get("HELM"), str(REPO / ".cache" / "bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _helm(*args: str) -> str:
    helm = find_helm()
    if helm is None:
        raise ChartError("helm not found: run tools/bootstrap.py or set $HELM")
    proc = subprocess.run([helm, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ChartError(f"helm {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _values_args(values_file: str | None, sets: dict[str, str] | None) -> list[str]:
    args: list[str] = []
    if values_file:
        args += ["-f", str(CHART / values_file)]
    for key, value in (sets or {}).items():
        args += ["--set-string", f"{key}={value}"]
    return args


def lint(values_file: str | None = None, chart: Path = CHART) -> str:
    """`helm lint --strict` (values.schema.json included)."""
    args = ["lint", "--strict", str(chart), "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", str(chart / values_file)]
    return _helm(*args)


def render_text(
    values_file: str | None = None,
    sets: dict[str, str] | None = None,
    *,
    chart: Path = CHART,
    extra: Iterable[str] = (),
) -> str:
    """`helm template` output (tests and hooks included)."""
    return _helm(
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *_values_args(values_file, sets),
        *extra,
    )


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Variant:
    values_file: str | None
    delivery: str
    knative: bool

    @property
    def sets(self) -> dict[str, str]:
        return {"eventDelivery": self.delivery, "knative.enabled": str(self.knative).lower()}

    def __str__(self) -> str:
        return f"{self.values_file or 'values.yaml'}/eventDelivery={self.delivery}/knative.enabled={self.knative}"


def variants() -> list[Variant]:
    return [Variant(f, d, k) for f in VALUES_FILES for d in DELIVERIES for k in KNATIVE]


def sentinel_sets() -> dict[str, str]:
    """--set-string values that make every Secret render, with sentinel secret values."""
    return {"secrets.existingSecret": "", "kafka.auth.existingSecret": "", **SENTINELS}


def render(variant: Variant, *, with_sentinels: bool = False) -> tuple[str, list[dict[str, Any]]]:
    sets = dict(variant.sets)
    if with_sentinels:
        sets.update(sentinel_sets())
    # --set-string would turn the boolean into a string; pass it as a typed --set instead.
    knative = sets.pop("knative.enabled")
    text = render_text(variant.values_file, sets, extra=["--set", f"knative.enabled={knative}"])
    return text, parse(text)


# --------------------------------------------------------------------------- schemas


def crd_dir() -> Path:
    """.cache/crds (tools/bootstrap.py crds); $TASKFLOW_CRD_DIR overrides (a directory of CRD files,
    with or without tools/crds.py's manifest.json)."""
    return Path(os.environ.get("TASKFLOW_CRD_DIR", REPO / ".cache" / "crds"))


def crd_manifest() -> dict[str, Any]:
    """The manifest of crd_dir(): where each file came from, and the kinds skipped (with why)."""
    directory = crd_dir()
    path = directory / "manifest.json"
    if path.is_file():
        manifest: dict[str, Any] = json.loads(path.read_text())
        return manifest
    if directory.is_dir() and "TASKFLOW_CRD_DIR" in os.environ:  # a plain directory of CRD files
        files = sorted(p.name for p in directory.glob("*.yaml"))
        return {"crds": [{"file": f, "source": str(directory), "path": f} for f in files], "skipped": []}
    raise ChartError(f"no CRDs at {directory}: run `python tools/bootstrap.py crds` (or nox -s helm)")


def _resource(spec: dict[str, Any]) -> dict[str, Any]:
    """A custom resource's schema around its spec schema (for a kind whose upstream CRD no registry serves)."""
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }


#: KafkaSink (eventing.knative.dev/v1alpha1, the dead-letter sinks): used only while no upstream CRD
#: is cached (knative.dev/eventing-kafka-broker does not resolve on the Go module proxy, see
#: tools/crds.py). Written from eventing-kafka-broker's KafkaSinkSpec and its validation (topic and
#: bootstrapServers required, contentMode structured|binary, positive partitions/replication,
#: auth.secret.ref.name).
KAFKASINK_SCHEMA = _resource(
    {
        "type": "object",
        "required": ["topic", "bootstrapServers"],
        "properties": {
            "topic": {"type": "string", "minLength": 1},
            "numPartitions": {"type": "integer", "minimum": 1},
            "replicationFactor": {"type": "integer", "minimum": 1},
            "bootstrapServers": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            "contentMode": {"type": "string", "enum": ["structured", "binary"]},
            "auth": {
                "type": "object",
                "properties": {
                    "secret": {
                        "type": "object",
                        "required": ["ref"],
                        "properties": {
                            "ref": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string", "minLength": 1}},
                            }
                        },
                    }
                },
            },
        },
    }
)


def _close(schema: Any) -> Any:
    """Make a structural schema strict: the API server prunes (kubectl --validate=strict rejects)
    unknown fields, so an unknown field in our manifests is a bug, not a no-op."""
    if isinstance(schema, list):
        return [_close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _close(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


#: (apiVersion, kind) -> schema written here, used only when no upstream CRD provides the kind.
FALLBACK_SCHEMAS = {("eventing.knative.dev/v1alpha1", "KafkaSink"): KAFKASINK_SCHEMA}


@functools.lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> closed openAPIV3Schema of every served CRD version."""
    directory = crd_dir()
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in crd_manifest()["crds"]:
        for crd in yaml.safe_load_all((directory / entry["file"]).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    # apiVersion, kind and metadata are implicit at the root of every CRD schema
                    # (some CRDs, e.g. PingSource's, list only spec and status)
                    props = schema.setdefault("properties", {})
                    props.setdefault("apiVersion", {"type": "string"})
                    props.setdefault("kind", {"type": "string"})
                    props.setdefault("metadata", {"type": "object"})
                    schemas[(f"{group}/{version['name']}", kind)] = _close(schema)
    for key, schema in FALLBACK_SCHEMAS.items():
        schemas.setdefault(key, _close(schema))
    return schemas


@functools.lru_cache(maxsize=1)
def skipped_kinds() -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> why its upstream CRD is not cached; objects of these kinds are not schema-checked."""
    schemas = crd_schemas()
    out = {}
    for entry in crd_manifest()["skipped"]:
        for ref in entry["kinds"]:
            api, kind = ref.split(" ")
            if (api, kind) not in schemas:
                out[(api, kind)] = f"{entry['source']} ({entry['path']}): {entry['reason']}"
    return out


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_metadata(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    errors = []
    name = meta.get("name", "")
    if not isinstance(name, str) or not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    for key in ("labels", "annotations"):
        for k, v in (meta.get(key) or {}).items():
            if not isinstance(v, str):
                errors.append(f"metadata.{key}.{k} must be a string, got {v!r}")
            elif key == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                errors.append(f"label {k}={v!r} is not a valid label value")
    return errors


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Schema errors of one rendered object (empty when valid)."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    errors = _check_metadata(obj)
    schema = crd_schemas().get((api, kind))
    if (api, kind) in skipped_kinds():
        return errors  # no upstream schema to be had: reported as skipped, never faked
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        errors += [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]
        return errors
    group = api.split("/")[0] if "/" in api else ""
    if "." in group and not group.endswith("k8s.io"):
        return [*errors, f"no schema for custom kind {api} {kind}"]
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        errors.append(f"{'.'.join(str(p) for p in exc.path)}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError:
        errors.append(f"no Kubernetes {KUBE_VERSION} schema for {api} {kind}")
    return errors


def validate_all(objs: list[dict[str, Any]]) -> list[str]:
    errors = []
    for obj in objs:
        errors += [f"{_ref(obj)}: {e}" for e in validate_object(obj)]
    return errors


# --------------------------------------------------------------------------- contract checks


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _find(objs: list[dict[str, Any]], kind: str, api_prefix: str = "") -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind and o.get("apiVersion", "").startswith(api_prefix)]


def pod_templates(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(object, pod metadata, pod spec) of every pod the chart renders."""
    for obj in objs:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind == "Pod":
            yield obj, obj.get("metadata") or {}, spec
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"} or (
            kind == "Service" and obj.get("apiVersion", "").startswith("serving.knative.dev/")
        ):
            template = spec.get("template") or {}
            yield obj, template.get("metadata") or {}, template.get("spec") or {}
        elif kind == "CronJob":
            template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            yield obj, template.get("metadata") or {}, template.get("spec") or {}


def check_restricted(objs: list[dict[str, Any]]) -> list[str]:
    """The "restricted" Pod Security Standard, plus requests/limits, on every rendered pod."""
    errors = []
    for obj, _meta, spec in pod_templates(objs):
        where = _ref(obj)
        psc = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                errors.append(f"{where}: {flag} is set")
        for vol in spec.get("volumes") or []:
            if "hostPath" in vol:
                errors.append(f"{where}: hostPath volume {vol.get('name')}")
        containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
        if not containers:
            errors.append(f"{where}: no containers")
        for c in containers:
            cw = f"{where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                errors.append(f"{cw}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                errors.append(f"{cw}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cw}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                errors.append(f"{cw}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                errors.append(f"{cw}: capabilities do not drop ALL")
            if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
                errors.append(f"{cw}: adds capabilities {caps.get('add')}")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cw}: readOnlyRootFilesystem is not true")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in {"RuntimeDefault", "Localhost"}:
                errors.append(f"{cw}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            res = c.get("resources") or {}
            for bound in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(bound) or {}):
                        errors.append(f"{cw}: no {bound}.{r}")
    return errors


# What Knative Serving's webhook admits in a revision template with its default config-features:
# the field masks of knative.dev/serving@v0.42.2 pkg/apis/serving/fieldmask.go (PodSpecMask,
# ContainerMask, SecurityContextMask, CapabilitiesMask, VolumeSourceMask, EnvVarSourceMask),
# applied by ValidatePodSpec in pkg/apis/serving/k8s_validation.go, with the defaults of
# pkg/apis/config/features.go. A field outside a mask is refused ("must not set the field(s)").
KNATIVE_POD_FIELDS = {
    "serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken",  # only false
    # RevisionSpec's own fields, inline beside the PodSpec
    "containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds",
}  # fmt: skip
#: pod fields a config-features flag (off by default) unlocks
KNATIVE_POD_FLAGS = {
    "securityContext": "kubernetes.podspec-securitycontext; secure-pod-defaults admits seccompProfile only",
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}
KNATIVE_CONTAINER_FIELDS = {
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe",
    "ports", "readinessProbe", "resources", "securityContext", "startupProbe", "terminationMessagePath",
    "terminationMessagePolicy", "volumeMounts",
}  # fmt: skip
KNATIVE_CONTAINER_SECURITY_FIELDS = {
    "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
    "allowPrivilegeEscalation", "seccompProfile",
}  # fmt: skip
#: volume sources admitted by default (emptyDir: kubernetes.podspec-volumes-emptydir is enabled by default)
KNATIVE_VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}


def _revision_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(object, field path, revision spec) of every Knative Service, Configuration and Revision."""
    for obj in objs:
        if not obj.get("apiVersion", "").startswith("serving.knative.dev/"):
            continue
        spec = obj.get("spec") or {}
        if obj.get("kind") in {"Service", "Configuration"}:
            yield obj, "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
        elif obj.get("kind") == "Revision":
            yield obj, "spec", spec


def _knative_refusals(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field under the revision spec, what would admit it) of every field Knative refuses by default."""
    for key in sorted(spec):
        if key in KNATIVE_POD_FLAGS:
            yield key, f"needs {KNATIVE_POD_FLAGS[key]}"
        elif key not in KNATIVE_POD_FIELDS:
            yield key, ""
    if spec.get("automountServiceAccountToken") is True:
        yield "automountServiceAccountToken", "Knative admits only false"
    for vol in spec.get("volumes") or []:
        for key in sorted(set(vol) - {"name"} - KNATIVE_VOLUME_SOURCES):
            yield f"volumes[{vol.get('name')}].{key}", ""
    for i, c in enumerate(spec.get("containers") or []):
        cpath = f"containers[{i}]"
        for key in sorted(set(c) - KNATIVE_CONTAINER_FIELDS):
            yield f"{cpath}.{key}", ""
        if c.get("name") == "queue-proxy":
            yield f"{cpath}.name", "queue-proxy is a reserved container name"
        sc = c.get("securityContext") or {}
        for key in sorted(set(sc) - KNATIVE_CONTAINER_SECURITY_FIELDS):
            yield f"{cpath}.securityContext.{key}", ""
        if (sc.get("capabilities") or {}).get("add"):
            yield f"{cpath}.securityContext.capabilities.add", "needs kubernetes.containerspec-addcapabilities"
        for env in c.get("env") or []:
            if env.get("name") in KNATIVE_RESERVED_ENV:
                yield f"{cpath}.env[{env['name']}]", "reserved by Knative"
            for key in sorted(set(env.get("valueFrom") or {}) - {"configMapKeyRef", "secretKeyRef"}):
                yield f"{cpath}.env[{env.get('name')}].valueFrom.{key}", "needs kubernetes.podspec-fieldref"


def check_knative_defaults(objs: list[dict[str, Any]]) -> list[str]:
    """Fields Knative Serving's webhook refuses under its default feature flags (a default install)."""
    return [
        f"{_ref(obj)}: must not set the field(s): {path}.{field}" + (f" [{why}]" if why else "")
        for obj, path, spec in _revision_specs(objs)
        for field, why in _knative_refusals(spec)
    ]


def _hook(obj: dict[str, Any]) -> tuple[set[str], int] | None:
    """(events, weight) of a Helm hook, None for an object of the release itself."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    if "helm.sh/hook" not in ann:
        return None
    return {e.strip() for e in ann["helm.sh/hook"].split(",")}, int(ann.get("helm.sh/hook-weight", "0"))


def check_hook_order(objs: list[dict[str, Any]]) -> list[str]:
    """The schema exists before any function starts (daprd's configuration store reads its table at start):
    the migration Job runs pre-install and pre-upgrade, and everything it needs that the chart renders (its
    Secret, its ServiceAccount, the in-cluster PostgreSQL) is a lighter hook of the same install, since
    Helm creates the release's own objects only after the pre-install hooks are done."""
    jobs = [o for o in _find(objs, "Job") if "migrat" in o["metadata"]["name"]]
    if not jobs:
        return []
    errors = []
    job = jobs[0]
    hook = _hook(job)
    if hook is None or not {"pre-install", "pre-upgrade"} <= hook[0]:
        return [f"{_ref(job)}: must be a pre-install,pre-upgrade hook (the functions start with the release's objects)"]
    weight = hook[1]
    by_name = {(o.get("kind"), o["metadata"]["name"]): o for o in objs}

    def needs(kind: str, name: str, why: str, events: tuple[str, ...] = ("pre-install", "pre-upgrade")) -> None:
        obj = by_name.get((kind, name))
        if obj is None:
            return  # not rendered by the chart: the user's, existing before the install
        h = _hook(obj)
        missing = [e for e in events if h is None or e not in h[0]]
        if missing or h is None or h[1] >= weight:
            errors.append(f"{_ref(job)} needs {kind}/{name} ({why}): it must be a {','.join(events)} hook "
                          f"lighter than the Job's weight {weight}")  # fmt: skip

    spec = job["spec"]["template"]["spec"]
    if spec.get("serviceAccountName"):
        needs("ServiceAccount", spec["serviceAccountName"], "its ServiceAccount")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                needs("Secret", ref["name"], f"env {env['name']}")
    for obj in objs:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/component") == "postgresql" and obj.get("kind") != "NetworkPolicy":
            # install only: a pre-upgrade hook would delete and recreate the database at every upgrade
            needs(obj["kind"], obj["metadata"]["name"], "the in-cluster database", ("pre-install",))
    return errors


def _function_pods(objs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    out = {}
    for obj, meta, spec in pod_templates(objs):
        name = (obj.get("metadata") or {}).get("name")
        if name in APP_IDS and obj.get("kind") in {"Service", "Deployment"}:
            out[name] = (obj, meta, spec)
    return out


def _env(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for c in spec.get("containers") or [] for e in c.get("env") or []}


def check_contract(variant: Variant, objs: list[dict[str, Any]]) -> list[str]:
    """Dapr wiring, scale to zero and delivery mode of one rendered variant."""
    errors: list[str] = []
    knative_mode = variant.delivery == "knative"

    # Every object carries the app.kubernetes.io labels.
    for obj in objs:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            if key not in labels:
                errors.append(f"{_ref(obj)}: label {key} missing")

    # One workload per function, of the right kind.
    pods = _function_pods(objs)
    if set(pods) != set(APP_IDS):
        errors.append(f"functions rendered: {sorted(pods)}, expected {sorted(APP_IDS)}")
    ksvcs = _find(objs, "Service", "serving.knative.dev/")
    deployments = [o for o in _find(objs, "Deployment") if o["metadata"]["name"] in APP_IDS]
    if variant.knative and (deployments or len(ksvcs) != len(APP_IDS)):
        errors.append("knative.enabled=true must render one Knative Service per function and no Deployments")
    if not variant.knative and (ksvcs or len(deployments) != len(APP_IDS)):
        errors.append("knative.enabled=false must render one Deployment per function and no Knative Services")

    for name, (obj, meta, spec) in sorted(pods.items()):
        ann = meta.get("annotations") or {}
        where = _ref(obj)
        want = {
            "dapr.io/enabled": "true",
            "dapr.io/app-id": name,
            "dapr.io/app-port": "8080",
            "dapr.io/config": "taskflow",
        }
        for key, value in want.items():
            if ann.get(key) != value:
                errors.append(f"{where}: annotation {key}={ann.get(key)!r}, expected {value!r}")
        for key in (
            "dapr.io/app-token-secret",
            "dapr.io/graceful-shutdown-seconds",
            "dapr.io/block-shutdown-duration",
            "dapr.io/log-as-json",
        ):
            if not ann.get(key):
                errors.append(f"{where}: annotation {key} missing")
        # Dapr's injector gives daprd a seccomp profile only from this annotation, and a Knative pod
        # has no pod-level securityContext to inherit one from: without it PodSecurity "restricted"
        # refuses the pod.
        if ann.get("dapr.io/sidecar-seccomp-profile-type") not in {"RuntimeDefault", "Localhost"}:
            errors.append(f"{where}: dapr.io/sidecar-seccomp-profile-type must be RuntimeDefault (daprd's seccomp)")
        port = ann.get("dapr.io/metrics-port")
        if not port or port in KNATIVE_RESERVED_PORTS:
            errors.append(f"{where}: dapr.io/metrics-port={port!r} must be set away from queue-proxy's ports (9090)")
        if variant.knative:
            want_scale = "0" if (name == "tasks-api" or knative_mode) else "1"
            got = ann.get("autoscaling.knative.dev/min-scale")
            if got != want_scale:
                errors.append(
                    f"{where}: min-scale {got!r}, expected {want_scale!r} with eventDelivery={variant.delivery}"
                )
        env = _env(spec)
        delivery = (env.get("TASKFLOW_EVENT_DELIVERY") or {}).get("value")
        if delivery != variant.delivery:
            errors.append(
                f"{where}: TASKFLOW_EVENT_DELIVERY={delivery!r}, expected {variant.delivery!r} "
                "(it decides whether a poison event is answered DROP for Dapr or 400 for Knative)"
            )
        target = name.replace("-", "_")
        if (env.get("FUNCTION_TARGET") or {}).get("value") != target:
            errors.append(f"{where}: FUNCTION_TARGET is not {target!r}")
        for ename, e in env.items():
            if re.search(r"(JWT_SECRET|API_TOKEN|PASSWORD|DATABASE_URL|SIGNING_KEY)$", ename) and "value" in e:
                errors.append(f"{where}: env {ename} has a literal value; use valueFrom.secretKeyRef")

    # Components: secrets only by secretKeyRef, the pub/sub settings DESIGN §7 asks for.
    components = {o["metadata"]["name"]: o for o in _find(objs, "Component", "dapr.io/")}
    for comp in components.values():
        for item in comp["spec"].get("metadata") or []:
            if re.search(r"password|connectionString|cert|key$|token|secret", item["name"], re.I) and "value" in item:
                errors.append(f"{_ref(comp)}: metadata {item['name']} has a literal value; use secretKeyRef")
    pubsub = components.get("taskflow-pubsub")
    if not pubsub or pubsub["spec"]["type"] != "pubsub.kafka":
        errors.append("Component taskflow-pubsub (pubsub.kafka) missing")
    else:
        meta = {i["name"]: i.get("value") for i in pubsub["spec"]["metadata"]}
        if int(meta.get("maxMessageBytes") or 0) <= 1024:
            errors.append("taskflow-pubsub: maxMessageBytes must be raised from Dapr's 1024 default")
        if meta.get("initialOffset") != "oldest":
            errors.append("taskflow-pubsub: initialOffset must be oldest")
        if "{appID}" not in str(meta.get("consumerGroup")):
            errors.append("taskflow-pubsub: consumerGroup must be per app ({appID})")
        if not meta.get("authType"):
            errors.append("taskflow-pubsub: authType is required")
    state = components.get("taskflow-state")
    if not state or state["spec"]["type"] != "state.postgresql" or state["spec"].get("version") != "v2":
        errors.append("Component taskflow-state must be state.postgresql version v2")
    for cname, ctype in (("taskflow-config", "configuration.postgresql"), ("taskflow-webhook", "bindings.http")):
        if (components.get(cname) or {}).get("spec", {}).get("type") != ctype:
            errors.append(f"Component {cname} ({ctype}) missing")
    errors += _check_object_store(components)
    crons = [c for c in components.values() if c["spec"]["type"] == "bindings.cron"]
    subs = _find(objs, "Subscription", "dapr.io/")
    sources = _find(objs, "KafkaSource") + _find(objs, "PingSource")

    if knative_mode:
        if crons or subs:
            errors.append("eventDelivery=knative must render no Dapr Subscriptions or cron bindings")
        kafka_sources = {o["spec"]["sink"]["ref"]["name"]: o for o in _find(objs, "KafkaSource")}
        if set(kafka_sources) != set(CONSUMERS):
            errors.append(f"KafkaSources for {sorted(kafka_sources)}, expected {sorted(CONSUMERS)}")
        sinks = {o["metadata"]["name"]: o for o in _find(objs, "KafkaSink")}
        for name, (topic, route, match) in CONSUMERS.items():
            src = kafka_sources.get(name)
            if not src:
                continue
            if src["spec"]["topics"] != [topic] or src["spec"]["sink"].get("uri") != route:
                errors.append(f"{_ref(src)}: must read {topic} and post to {route}")
            dls = (src["spec"].get("delivery") or {}).get("deadLetterSink")
            if match:  # like its Dapr subscription: audit dead-letters the shared topic's poison events
                if dls:
                    errors.append(f"{_ref(src)}: no deadLetterSink (audit dead-letters {topic} once)")
                continue
            ref = (dls or {}).get("ref") or {}
            if ref.get("kind") == "KafkaSink":
                sink = sinks.get(ref.get("name", ""))
                if ref.get("apiVersion") != "eventing.knative.dev/v1alpha1" or not sink:
                    errors.append(f"{_ref(src)}: deadLetterSink names KafkaSink {ref.get('name')!r}, not rendered")
                elif sink["spec"]["topic"] != f"{topic}-dlq" or sink["spec"].get("contentMode") != "structured":
                    errors.append(f"{_ref(sink)}: must write structured CloudEvents to {topic}-dlq")
            elif not (dls or {}).get("uri"):
                errors.append(f"{_ref(src)}: a deadLetterSink is required (poison events are answered 400)")
        pings = sorted(
            (p["spec"]["sink"]["ref"]["name"], p["spec"]["sink"].get("uri")) for p in _find(objs, "PingSource")
        )
        if pings != sorted(CRON_TRIGGERS):
            errors.append(f"PingSources must post {sorted(CRON_TRIGGERS)} (function, route), got {pings}")
        endpoints = _find(objs, "HTTPEndpoint", "dapr.io/")
        api_env = _env(pods["tasks-api"][2]) if "tasks-api" in pods else {}
        audit_id = (api_env.get("TASKFLOW_AUDIT_APP_ID") or {}).get("value")
        if len(endpoints) != 1 or endpoints[0]["metadata"]["name"] != audit_id:
            errors.append("tasks-api must reach audit through a Dapr HTTPEndpoint named by TASKFLOW_AUDIT_APP_ID")
        elif not re.match(rf"^http://audit\.{NAMESPACE}\.svc\.cluster\.local", endpoints[0]["spec"]["baseUrl"]):
            errors.append("HTTPEndpoint must point at audit's cluster-local URL")
    else:
        if sources:
            errors.append("eventDelivery=dapr must render no KafkaSource or PingSource")
        if {c["metadata"]["name"] for c in crons} != set(CRON_BINDINGS):
            errors.append(f"eventDelivery=dapr needs the cron bindings {', '.join(sorted(CRON_BINDINGS))}")
        for c in crons:
            meta = {i["name"]: i.get("value") for i in c["spec"]["metadata"]}
            want = CRON_BINDINGS.get(c["metadata"]["name"], ("", "/cron"))
            if meta.get("route") != want[1] or meta.get("direction") != "input" or c.get("scopes") != [want[0]]:
                errors.append(f"{_ref(c)}: needs route {want[1]}, direction input and scope {want[0]}")
        by_app = {(s.get("scopes") or [""])[0]: s for s in subs}
        if set(by_app) != set(CONSUMERS):
            errors.append(f"Subscriptions scoped to {sorted(by_app)}, expected {sorted(CONSUMERS)}")
        for name, (topic, route, match) in CONSUMERS.items():
            sub = by_app.get(name)
            if not sub:
                continue
            spec = sub["spec"]
            if sub["apiVersion"] != "dapr.io/v2alpha1" or spec.get("topic") != topic:
                errors.append(f"{_ref(sub)}: must be dapr.io/v2alpha1 on topic {topic}")
            if match and "deadLetterTopic" in spec:
                errors.append(
                    f"{_ref(sub)}: a rules-only subscription must not set deadLetterTopic "
                    "(daprd copies every unmatched event to it)"
                )
            elif not match and spec.get("deadLetterTopic") != f"{topic}-dlq":
                errors.append(f"{_ref(sub)}: deadLetterTopic must be {topic}-dlq")
            routes = spec.get("routes") or {}
            if match:
                rules = routes.get("rules") or []
                if not any(r.get("match") == match and r.get("path") == route for r in rules):
                    errors.append(f"{_ref(sub)}: needs the routing rule {match} -> {route}")
            elif routes.get("default") != route:
                errors.append(f"{_ref(sub)}: default route must be {route}")
        if "tasks-api" in pods:
            audit_id = (_env(pods["tasks-api"][2]).get("TASKFLOW_AUDIT_APP_ID") or {}).get("value")
            if audit_id != "audit":
                errors.append("eventDelivery=dapr: tasks-api invokes audit by app-id")

    if not _find(objs, "Resiliency", "dapr.io/"):
        errors.append("Resiliency missing")
    if not [c for c in _find(objs, "Configuration", "dapr.io/") if c["metadata"]["name"] == "taskflow"]:
        errors.append("Dapr Configuration taskflow missing")
    if not [o for o in _find(objs, "Job") if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]:
        errors.append("migration hook Job missing")
    if not [o for o in _find(objs, "Pod") if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]:
        errors.append("helm test Pod missing")
    return errors


def _check_object_store(components: dict[str, Any]) -> list[str]:
    """The S3 binding of exports and the audit archive, its keys by secretKeyRef from a secret store
    the chart knows (Kubernetes, or the AWS Secrets Manager component it renders)."""
    errors: list[str] = []
    s3 = components.get("taskflow-objects")
    if s3 is None:
        return []  # objectStore.bucket not set: no object store (values-cloud.yaml sets one; test_chart checks it)
    if s3["spec"]["type"] != "bindings.aws.s3":
        return ["Component taskflow-objects must be bindings.aws.s3"]
    if sorted(s3.get("scopes") or []) != ["exports", "tasks-api"]:
        errors.append("taskflow-objects must be scoped to tasks-api (presign) and exports")
    meta = {i["name"]: i for i in s3["spec"]["metadata"]}
    if not (meta.get("bucket") or {}).get("value") or (meta.get("direction") or {}).get("value") != "output":
        errors.append("taskflow-objects needs a bucket and direction output")
    store = (s3.get("auth") or {}).get("secretStore")
    for key in ("accessKey", "secretKey"):
        if key in meta and "secretKeyRef" not in meta[key]:
            errors.append(f"taskflow-objects: {key} must come from a secretKeyRef, never a value")
    if store != "kubernetes":
        aws = components.get(store or "")
        if not aws or aws["spec"]["type"] != "secretstores.aws.secretmanager":
            errors.append(f"taskflow-objects reads its keys from {store!r}, which is no AWS Secrets Manager component")
        elif any(i["name"] in ("accessKey", "secretKey") for i in aws["spec"]["metadata"]):
            errors.append(f"{store}: no static keys (the sidecar authenticates with the AWS default chain)")
    return errors


def check_no_plaintext_secrets(text: str, objs: list[dict[str, Any]]) -> list[str]:
    """Rendered with SENTINELS: they appear only base64-encoded, and only in Secret `data`."""
    errors = []
    for marker in SENTINEL_MARKERS:
        if marker in text:
            line = next(ln for ln in text.splitlines() if marker in ln)
            errors.append(f"secret value in plain text: {line.strip()[:120]}")
    encoded = {base64.b64encode(v.encode()).decode(): k for k, v in SENTINELS.items()}
    decoded_seen = ""
    for obj in objs:
        if obj.get("kind") == "Secret":
            if "stringData" in obj:
                errors.append(f"{_ref(obj)}: uses stringData (plain text); use base64 data")
            for key, value in (obj.get("data") or {}).items():
                try:
                    decoded_seen += base64.b64decode(value, validate=True).decode() + "\n"
                except ValueError:
                    errors.append(f"{_ref(obj)}: data.{key} is not base64")
            continue
        dumped = json.dumps(obj)
        for enc, key in encoded.items():
            if enc in dumped:
                errors.append(f"{_ref(obj)}: carries {key} base64-encoded outside a Secret")
    expected = list(SENTINEL_MARKERS)
    if not _find(objs, "StatefulSet"):  # no in-cluster PostgreSQL: its password is not used
        expected.remove(_marker("postgresql.auth.password"))
    missing = [m for m in expected if m not in decoded_seen]
    if missing:
        errors.append(f"sentinel secrets not found in any Secret's data (chart ignored them?): {missing}")
    return errors


def check_values_comments(path: Path = CHART / "values.yaml") -> list[str]:
    """Every leaf value in values.yaml has a comment above it (or inline)."""
    errors = []
    lines = path.read_text().splitlines()
    key_re = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m:
            continue
        indent, key, rest = m.groups()
        rest = rest.strip()
        nxt = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        is_section = rest == "" and (len(nxt) - len(nxt.lstrip())) > len(indent) and not nxt.lstrip().startswith("- ")
        if is_section:
            continue
        prev = lines[i - 1].strip() if i else ""
        if not prev.startswith("#") and "#" not in rest:
            errors.append(f"values.yaml:{i + 1}: {key} has no comment")
    return errors


# --------------------------------------------------------------------------- driver


@dataclass
class Report:
    results: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, name: str, errors: list[str]) -> None:
        self.results.append((name, errors))
        status = "ok" if not errors else f"FAILED ({len(errors)})"
        print(f"{status:>12}  {name}")
        for e in errors[:40]:
            print(f"              - {e}")

    @property
    def failed(self) -> int:
        return sum(1 for _, e in self.results if e)


def _run(report: Report, name: str, fn: Any, *args: Any) -> None:
    try:
        report.add(name, fn(*args))
    except ChartError as exc:
        report.add(name, [str(exc)])


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO / "tools"))
    import render_manifests

    report = Report()
    for values_file in VALUES_FILES:
        _run(report, f"helm lint --strict {values_file or 'values.yaml'}", lambda f: (lint(f), [])[1], values_file)
    _run(report, "values.yaml: a comment on every value", check_values_comments)
    for variant in variants():
        try:
            _, objs = render(variant)
            secret_text, secret_objs = render(variant, with_sentinels=True)
        except ChartError as exc:
            report.add(f"render {variant}", [str(exc)])
            continue
        report.add(f"schemas     {variant} ({len(objs)} objects)", validate_all(objs) + validate_all(secret_objs))
        report.add(f"contract    {variant}", check_contract(variant, objs))
        report.add(f"restricted  {variant}", check_restricted(objs) + check_restricted(secret_objs))
        report.add(f"knative-defaults {variant}", check_knative_defaults(objs))
        report.add(f"hook-order  {variant}", check_hook_order(objs) + check_hook_order(secret_objs))
        report.add(f"no-plaintext-secrets {variant}", check_no_plaintext_secrets(secret_text, secret_objs))
    _run(report, "knative/ is up to date (tools/render_manifests.py --check)", render_manifests.stale_files)
    for (api, kind), why in sorted(skipped_kinds().items()):
        print(f"{'skipped':>12}  schema of {api} {kind}: {why}")
    total = len(report.results)
    print(f"\n{total - report.failed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
