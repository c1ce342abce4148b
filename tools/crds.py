#!/usr/bin/env python3
"""Upstream CustomResourceDefinitions for the chart checks and the cluster: pinned, cached, with provenance.

    python tools/bootstrap.py crds     # fetch (a warm run only compares a stamp)
    python tools/crds.py               # show what .cache/crds/ holds and what was skipped, and why

Every CRD is copied byte for byte from an upstream release that a package registry serves:

- Go modules (``go mod download -json <module>@<version>`` prints the module's ``Dir`` in the Go
  module cache; the files are copied from there): Knative Serving, Knative Eventing's PingSource,
  Dapr (the version tools/daprd/go.mod requires, so daprd and its CRDs never drift apart),
  prometheus-operator, and eventing-kafka-broker's KafkaSource and KafkaSink when the module resolves.
- Strimzi publishes no CRD files to Maven Central, but its API model (``io.strimzi:api``) and the
  generator its own build writes ``packaging/install/cluster-operator/04x-Crd-*.yaml`` with
  (``io.strimzi:crd-generator``); tools/strimzi/pom.xml resolves both and the generator runs with
  the arguments of that build step (it needs Java 21+).

A source that cannot be had is recorded as skipped with the reason (the checks of its kinds are then
skipped visibly, never faked). Output, under the repository's ``.cache/crds/``:

    <name>.yaml       the CRD files
    manifest.json     {"inputs": <stamp>, "crds": [{"file", "source", "path", "sha256"}],
                       "skipped": [{"source", "path", "kinds", "reason"}]}

``source`` is ``<module>@<version>`` (or the Maven coordinates), ``path`` the file inside it;
skipped ``kinds`` read ``<group>/<version> <Kind>``. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
CRD_DIR = REPO / ".cache" / "crds"
MANIFEST_NAME = "manifest.json"
STRIMZI_POM = TOOLS / "strimzi" / "pom.xml"


class CrdError(RuntimeError):
    pass


def _dapr_version() -> str:
    """The github.com/dapr/dapr version tools/daprd builds daprd from."""
    gomod = (TOOLS / "daprd" / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?github\.com/dapr/dapr\s+(v\S+)", gomod, re.M)
    if not m:
        raise CrdError("tools/daprd/go.mod does not require github.com/dapr/dapr")
    return m.group(1)


@dataclass(frozen=True)
class GoSource:
    module: str
    version: str
    #: path inside the module -> file name under .cache/crds
    files: dict[str, str]
    #: the kinds the chart takes from these files (named when the source is skipped)
    kinds: tuple[str, ...]
    #: the module may not resolve: then its kinds are skipped with the error as the reason
    optional: bool = False

    @property
    def source(self) -> str:
        return f"{self.module}@{self.version}"


def go_sources() -> list[GoSource]:
    serving = "config/core/300-resources"
    kafka = "control-plane/config/eventing-kafka-broker"
    prom = "example/prometheus-operator-crd"
    return [
        GoSource(
            "knative.dev/serving",
            "v0.42.2",  # Knative Serving 1.15; the newest knative.dev/serving the module proxy serves with its deps
            {f"{serving}/{f}.yaml": f"knative-serving-{f}.yaml" for f in ("service", "configuration", "revision")}
            | {f"{serving}/route.yaml": "knative-serving-route.yaml"},
            ("serving.knative.dev/v1 Service",),
        ),
        GoSource(
            "knative.dev/eventing",
            "v0.42.3",  # Knative Eventing 1.15, the release line of the Serving above
            {"config/core/resources/pingsource.yaml": "knative-pingsource.yaml"},
            ("sources.knative.dev/v1 PingSource",),
        ),
        GoSource(
            "knative.dev/eventing-kafka-broker",
            "v0.42.0",
            {
                f"{kafka}/100-source/100-kafka-source.yaml": "knative-kafkasource.yaml",
                f"{kafka}/100-sink/100-kafka-sink.yaml": "knative-kafkasink.yaml",
            },
            ("sources.knative.dev/v1beta1 KafkaSource", "eventing.knative.dev/v1alpha1 KafkaSink"),
            optional=True,
        ),
        GoSource(
            "github.com/dapr/dapr",
            _dapr_version(),
            {
                f"charts/dapr/crds/{f}.yaml": f"dapr-{f}.yaml"
                for f in ("components", "configuration", "resiliency", "subscription", "httpendpoints")
            },
            (
                "dapr.io/v1alpha1 Component",
                "dapr.io/v1alpha1 Configuration",
                "dapr.io/v1alpha1 Resiliency",
                "dapr.io/v2alpha1 Subscription",
                "dapr.io/v1alpha1 HTTPEndpoint",
            ),
        ),
        GoSource(
            "github.com/prometheus-operator/prometheus-operator",
            "v0.85.0",
            {
                f"{prom}/monitoring.coreos.com_{f}.yaml": f"prometheus-{f}.yaml"
                for f in ("podmonitors", "servicemonitors", "prometheusrules")
            },
            ("monitoring.coreos.com/v1 PodMonitor",),
        ),
    ]


#: Strimzi API class -> file name; arguments of api-<version>.pom's generate-crd-co-install-v1 execution.
STRIMZI_CLASSES = {
    "io.strimzi.api.kafka.model.kafka.Kafka": "strimzi-kafka.yaml",
    "io.strimzi.api.kafka.model.nodepool.KafkaNodePool": "strimzi-kafkanodepool.yaml",
    "io.strimzi.api.kafka.model.topic.KafkaTopic": "strimzi-kafkatopic.yaml",
}
STRIMZI_ARGS = [
    "--label", "app:strimzi",
    "--label", "strimzi.io/crd-install:true",
    "--target-kube", "1.16+",
    "--crd-api-version", "v1",
    "--api-versions", "v1",
    "--storage-version", "v1",
    "--yaml",
]  # fmt: skip
STRIMZI_KINDS = ("kafka.strimzi.io/v1 Kafka", "kafka.strimzi.io/v1 KafkaNodePool", "kafka.strimzi.io/v1 KafkaTopic")


def strimzi_version() -> str:
    m = re.search(r"<strimzi\.version>([^<]+)</strimzi\.version>", STRIMZI_POM.read_text())
    if not m:
        raise CrdError("tools/strimzi/pom.xml has no <strimzi.version> property")
    return m.group(1).strip()


def inputs_digest() -> str:
    """Changes when a pin or the way files are taken changes (the bootstrap stamp compares it)."""
    h = hashlib.sha256()
    for p in (Path(__file__).resolve(), STRIMZI_POM, TOOLS / "daprd" / "go.mod"):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------- reading


def load_manifest(directory: Path = CRD_DIR) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CrdError(f"{path} missing or unreadable ({e}); run: python tools/bootstrap.py crds") from e
    return data


# --------------------------------------------------------------------------------------- fetching


Log = Callable[[str], None]


def _go_module_dir(module: str, version: str) -> Path:
    """Download (or find in the Go module cache) module@version; its directory in the cache."""
    if not shutil.which("go"):
        raise CrdError("'go' is not on PATH (needed to download Go modules)")
    try:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tempfile.gettempdir(),  # outside any module: a plain download
        )
    except subprocess.TimeoutExpired as e:
        raise CrdError(f"go mod download {module}@{version}: timed out") from e
    try:
        info = json.loads(proc.stdout or "{}")
    except ValueError:
        info = {}
    error = info.get("Error") or (proc.stderr.strip() if proc.returncode else "")
    if error or not info.get("Dir"):
        detail = " ".join((error or proc.stdout).split())
        raise CrdError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


def _java21() -> str | None:
    """A java of version 21 or newer: $JAVA_HOME, PATH, then the JDKs under /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java") or ""))
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    for java in candidates:
        try:
            out = subprocess.run(
                [str(java), "-XshowSettings:properties", "-version"], capture_output=True, text=True, timeout=30
            ).stderr
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"java\.specification\.version = (\d+)", out)
        if m and int(m.group(1)) >= 21:
            return str(java)
    return None


def _strimzi(out: Path, log: Log) -> list[str]:
    """Generate Strimzi's CRDs into ``out``; the file names written."""
    java = _java21()
    if not java:
        raise CrdError(
            f"io.strimzi:crd-generator:{strimzi_version()} needs Java 21+ and none was found "
            "($JAVA_HOME, PATH, /usr/lib/jvm); with one installed, run `python tools/bootstrap.py --force crds`"
        )
    if not shutil.which("mvn"):
        raise CrdError("'mvn' is not on PATH (needed to fetch io.strimzi:api and crd-generator from Maven Central)")
    cp_file = out / ".strimzi-classpath"
    log(f"  strimzi {strimzi_version()}: resolving io.strimzi:api and io.strimzi:crd-generator (Maven)")
    proc = subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(STRIMZI_POM), "dependency:build-classpath",
            f"-Dmdep.outputFile={cp_file}", "-Dmdep.includeScope=runtime",
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0 or not cp_file.exists():
        raise CrdError(f"mvn could not resolve tools/strimzi/pom.xml: {(proc.stdout + proc.stderr).strip()[-800:]}")
    classpath = cp_file.read_text().strip()
    cp_file.unlink()
    log(f"  strimzi {strimzi_version()}: io.strimzi.crdgenerator.CrdGenerator ({java})")
    targets = [f"{cls}={out / name}" for cls, name in STRIMZI_CLASSES.items()]
    proc = subprocess.run(
        [java, "-cp", classpath, "io.strimzi.crdgenerator.CrdGenerator", *STRIMZI_ARGS, *targets],
        capture_output=True,
        text=True,
        timeout=600,
    )
    missing = [n for n in STRIMZI_CLASSES.values() if not (out / n).exists()]
    if proc.returncode != 0 or missing:
        raise CrdError(f"Strimzi's CrdGenerator failed: {(proc.stdout + proc.stderr).strip()[-800:]}")
    return list(STRIMZI_CLASSES.values())


@dataclass
class _Build:
    out: Path
    crds: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, source: str, path: str) -> None:
        data = (self.out / name).read_bytes()
        if not re.search(rb"^kind:\s*CustomResourceDefinition\s*$", data, re.M):
            raise CrdError(f"{source} {path}: not a CustomResourceDefinition")
        digest = hashlib.sha256(data).hexdigest()
        self.crds.append({"file": name, "source": source, "path": path, "sha256": digest})


def sync(directory: Path = CRD_DIR, log: Log = print) -> dict[str, Any]:
    """Rebuild ``directory`` from the pinned sources; returns the manifest written there."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".crds-", dir=directory.parent))
    try:
        build = _Build(staging)
        for src in go_sources():
            try:
                moddir = _go_module_dir(src.module, src.version)
            except CrdError as e:
                if not src.optional:
                    raise
                log(f"  {src.source}: skipped ({e})")
                build.skipped.append(
                    {
                        "source": src.source,
                        "path": ", ".join(src.files),
                        "kinds": list(src.kinds),
                        "reason": f"the Go module proxy does not serve it: {e}",
                    }
                )
                continue
            for path, name in src.files.items():
                if not (moddir / path).is_file():
                    raise CrdError(f"{src.source} has no {path}")
                shutil.copyfile(moddir / path, staging / name)
                build.add(name, src.source, path)
            log(f"  {src.source}: {len(src.files)} CRD file(s)")
        version = strimzi_version()
        strimzi_source = f"io.strimzi:api:{version} + io.strimzi:crd-generator:{version} (Maven Central)"
        try:
            for name in _strimzi(staging, log):
                cls = next(c for c, n in STRIMZI_CLASSES.items() if n == name)
                build.add(name, strimzi_source, f"CrdGenerator {cls}")
        except CrdError as e:
            log(f"  strimzi: skipped ({e})")
            build.skipped.append(
                {"source": strimzi_source, "path": "generated", "kinds": list(STRIMZI_KINDS), "reason": str(e)}
            )
        manifest = {"inputs": inputs_digest(), "crds": build.crds, "skipped": build.skipped}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def main() -> int:
    try:
        manifest = load_manifest()
    except CrdError as e:
        print(e, file=sys.stderr)
        return 1
    for c in manifest["crds"]:
        print(f"{c['file']:<36} {c['source']}  {c['path']}")
    for s in manifest["skipped"]:
        print(f"{'SKIPPED':<36} {', '.join(s['kinds'])}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
