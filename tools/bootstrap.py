#!/usr/bin/env python3
"""Fetch and build the real parts of the local stack (stdlib only, idempotent).

    python tools/bootstrap.py            # the default steps: daprd helm kafka crds
    python tools/bootstrap.py dapr knative coredns  # the cluster's control planes and DNS
    python tools/bootstrap.py kubernetes pause traefik  # the local cluster's node (tools/cluster.py)
    python tools/bootstrap.py daprd helm # only some steps
    python tools/bootstrap.py --force kafka

Outputs (git-ignored, under the repository's ``.cache/``):

    .cache/bin/daprd          Dapr sidecar v1.18.2, built from tools/daprd (Go module with the
                              replace directives of dapr/dapr), -tags stablecomponents
    .cache/bin/helm           helm v3.22.0, built from tools/helm
    .cache/bin/dapr/          Dapr control plane v1.18.2 (operator, injector, sentry) from tools/daprd
    .cache/bin/knative/       Knative Serving v0.42.2 (controller, webhook, autoscaler, activator, queue)
                              built from tools/knative
    .cache/bin/coredns        CoreDNS v1.15.0, built from tools/coredns
    .cache/bin/kube-*, kubelet, kubectl
                              Kubernetes v1.37.2, built from tools/kubernetes (k8s.io/kubernetes with
                              the replace directives of its go.mod)
    .cache/bin/pause          the pod sandbox's pause binary (static, gcc) from k8s.io/kubernetes's
                              build/pause
    .cache/bin/traefik        Traefik 3.6.12 (the cluster's Knative networking layer), from tools/traefik
    .cache/kafka/libs/        Apache Kafka 4.x broker + tools + Log4j2 binding (tools/kafka/pom.xml)
    .cache/kafka/classes/     tools/kafka/TaskflowKafkaTool.java, compiled
    .cache/crds/              upstream CRDs for the chart checks and the cluster, with manifest.json
                              saying where each came from (tools/crds.py)
    .cache/stamps/<step>.json what was built from which inputs; a step is skipped when its output
                              exists and the stamp matches the pinned version and inputs

Needs: go (>= the go directive of the tool modules), java 17+, javac, mvn, and network access to the
Go module proxy and Maven Central (or warm caches). Exits non-zero naming what could not be built.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
CACHE = REPO / ".cache"
BIN = CACHE / "bin"
STAMPS = CACHE / "stamps"
KAFKA_LIBS = CACHE / "kafka" / "libs"
KAFKA_CLASSES = CACHE / "kafka" / "classes"

DAPR_VERSION = "1.18.2"
HELM_VERSION = "v3.22.0"
KNATIVE_VERSION = "v0.42.2"  # knative.dev/serving module version (Knative Serving 1.15)
COREDNS_VERSION = "v1.15.0"
KUBERNETES_VERSION = "v1.37.2"
KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
PAUSE_VERSION = "3.10.2"  # TAG of build/pause/Makefile at KUBERNETES_VERSION
TRAEFIK_VERSION = "3.6.12"
DAPRD = BIN / "daprd"
HELM = BIN / "helm"
DAPR_BIN = BIN / "dapr"
KNATIVE_BIN = BIN / "knative"
COREDNS = BIN / "coredns"
KUBE_APISERVER = BIN / "kube-apiserver"
PAUSE = BIN / "pause"
TRAEFIK = BIN / "traefik"
DAPR_CONTROL_PLANE = ("operator", "injector", "sentry")  # placement and scheduler stay off
KNATIVE_COMMANDS = ("controller", "webhook", "autoscaler", "activator", "queue")


class BootstrapError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def _sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _stamp_ok(name: str, want: dict) -> bool:
    f = STAMPS / f"{name}.json"
    try:
        have = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return all(have.get(k) == v for k, v in want.items())


def _write_stamp(name: str, data: dict) -> None:
    STAMPS.mkdir(parents=True, exist_ok=True)
    (STAMPS / f"{name}.json").write_text(
        json.dumps({**data, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n"
    )


def _need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BootstrapError(f"'{tool}' is not on PATH (needed to {why})")
    return path


def _run(
    cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 3600
) -> str:
    log(f"  $ {' '.join(cmd)}")
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            cmd,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise BootstrapError(f"{what}: timed out after {timeout}s") from e
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip()
        raise BootstrapError(f"{what} failed (exit {res.returncode}):\n{out[-4000:]}")
    log(f"  done in {time.monotonic() - t0:.0f}s")
    return res.stdout


def _version_of(binary: Path, args: list[str] | None, package: str = "") -> str:
    """What ``binary args`` prints, or (args None) the version of the module providing ``package``
    as recorded in the binary's Go build info (for commands without a version flag)."""
    if args is None:
        return build_info_version(binary, package)
    try:
        return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _reports(binary: Path, args: list[str] | None, package: str, version: str) -> bool:
    """``binary`` says it is ``version``: exactly, or as a word of its first line (``Kubernetes v1.37.2``)."""
    got = _version_of(binary, args, package)
    return got == version or version in (got.splitlines() or [""])[0].split()


def build_info_version(binary: Path, package: str) -> str:
    """The version of the module that provides ``package``, from ``go version -m binary``."""
    if not binary.exists() or not shutil.which("go"):
        return ""
    try:
        out = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    best = ("", "")
    for line in out.splitlines():
        parts = line.split()
        provides = len(parts) >= 3 and (package + "/").startswith(parts[1] + "/")
        if provides and parts[0] in {"mod", "dep", "=>"} and len(parts[1]) > len(best[0]):
            best = (parts[1], parts[2])
    return best[1]


# --------------------------------------------------------------------------------------- steps


def _go_tool(
    name: str,
    version: str,
    binary: Path,
    version_args: list[str] | None,
    package: str | list[str],
    ldflags: str,
    *,
    tags: str | None = None,
    note: str = "",
    force: bool = False,
    module: str | None = None,
) -> None:
    """Build ``package`` from the tool module ``tools/<module or name>`` unless ``binary`` already
    reports ``version`` (``version_args`` None: the module version in the binary's build info).

    With several packages (one ``go build``), each command lands in ``binary.parent`` under its own
    name, and ``binary`` (one of them) answers the version probe.
    """
    mod = TOOLS / (module or name)
    packages = [package] if isinstance(package, str) else package
    outputs = [binary] if len(packages) == 1 else [binary.parent / p.rsplit("/", 1)[-1] for p in packages]
    want = {"version": version, "inputs": _sha(mod / "go.mod", mod / "go.sum")}
    if tags:
        want["tags"] = tags
    if not force and all(o.exists() for o in outputs) and _reports(binary, version_args, packages[0], version):
        if not _stamp_ok(name, want):
            _write_stamp(name, want)  # binary is right (e.g. built by hand with the same command)
        log(f"{name} {version}: up to date ({binary.parent if len(outputs) > 1 else binary})")
        return
    _need("go", f"build {name}")
    log(f"{name} {version}: building from tools/{mod.name}{note}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tag_args = ["-tags", tags] if tags else []
    out = str(binary) if len(packages) == 1 else f"{binary.parent}{os.sep}"
    _run(
        ["go", "build", *tag_args, "-trimpath", "-ldflags", ldflags, "-o", out, *packages],
        f"building {name} {version} ({', '.join(packages)} in tools/{mod.name})",
        cwd=mod,
        env={"CGO_ENABLED": "0"},
    )
    if not _reports(binary, version_args, packages[0], version):
        got = _version_of(binary, version_args, packages[0])
        raise BootstrapError(f"built {name} reports version {got!r}, expected {version}")
    _write_stamp(name, want)
    log(f"{name} {version}: built")


def step_daprd(force: bool = False) -> None:
    _go_tool(
        "daprd",
        DAPR_VERSION,
        DAPRD,
        ["--version"],
        "github.com/dapr/dapr/cmd/daprd",
        f"-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_VERSION}",
        tags="stablecomponents",
        note=" (a few minutes on 2 cores; Go caches make rebuilds fast)",
        force=force,
    )


def step_helm(force: bool = False) -> None:
    _go_tool(
        "helm",
        HELM_VERSION,
        HELM,
        ["version", "--template", "{{.Version}}"],
        "helm.sh/helm/v3/cmd/helm",
        f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION} "
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        force=force,
    )


def step_dapr(force: bool = False) -> None:
    """Dapr's control plane (the same module and version as daprd)."""
    for cmd in DAPR_CONTROL_PLANE:
        _go_tool(
            f"dapr-{cmd}",
            f"v{DAPR_VERSION}",
            DAPR_BIN / cmd,
            None,
            f"github.com/dapr/dapr/cmd/{cmd}",
            f"-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_VERSION}",
            module="daprd",
            force=force,
        )


def step_knative(force: bool = False) -> None:
    """Knative Serving's commands; the first build compiles the shared packages (minutes), the
    others mostly link."""
    for cmd in KNATIVE_COMMANDS:
        _go_tool(
            f"knative-{cmd}",
            KNATIVE_VERSION,
            KNATIVE_BIN / cmd,
            None,
            f"knative.dev/serving/cmd/{cmd}",
            "-s -w",
            module="knative",
            force=force,
        )


def step_coredns(force: bool = False) -> None:
    _go_tool(
        "coredns",
        COREDNS_VERSION,
        COREDNS,
        None,
        "github.com/coredns/coredns",
        "-s -w",
        force=force,
    )


def _k8s_ldflags() -> str:
    v = KUBERNETES_VERSION
    major, minor = v.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def step_kubernetes(force: bool = False) -> None:
    """kube-apiserver, -controller-manager, -scheduler, -proxy, kubelet and kubectl in one go build."""
    _go_tool(
        "kubernetes",
        KUBERNETES_VERSION,
        KUBE_APISERVER,
        ["--version"],
        [f"k8s.io/kubernetes/cmd/{c}" for c in KUBERNETES_COMMANDS],
        _k8s_ldflags(),
        note=" (about 15 min of CPU cold on 2 cores; Go caches make rebuilds fast)",
        force=force,
    )


def go_module_dir(module: str, version: str, cwd: Path) -> Path:
    """Directory of ``module@version`` in the Go module cache (downloaded if needed)."""
    _need("go", f"download {module}")
    out = _run(["go", "mod", "download", "-json", f"{module}@{version}"], f"go mod download {module}", cwd=cwd)
    return Path(json.loads(out)["Dir"])


def step_pause(force: bool = False) -> None:
    """The pod sandbox's pause binary: build/pause/linux/pause.c of k8s.io/kubernetes, static, with gcc."""
    want = {"version": PAUSE_VERSION, "kubernetes": KUBERNETES_VERSION}
    if not force and PAUSE.exists() and _stamp_ok("pause", want):
        log(f"pause {PAUSE_VERSION}: up to date ({PAUSE})")
        return
    _need("gcc", "compile the pause binary")
    src = go_module_dir("k8s.io/kubernetes", KUBERNETES_VERSION, TOOLS / "kubernetes") / "build/pause/linux/pause.c"
    BIN.mkdir(parents=True, exist_ok=True)
    _run(
        ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}", "-o", str(PAUSE), str(src)],
        "compiling build/pause/linux/pause.c",
    )
    _write_stamp("pause", want)
    log(f"pause {PAUSE_VERSION}: built ({PAUSE})")


def step_traefik(force: bool = False) -> None:
    """Traefik, the local cluster's Knative networking layer (its Knative provider)."""
    _go_tool(
        "traefik",
        TRAEFIK_VERSION,
        TRAEFIK,
        ["version"],
        "github.com/traefik/traefik/v3/cmd/traefik",
        f"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",
        note=" (a few minutes on 2 cores)",
        force=force,
    )


def kafka_version() -> str:
    pom = (TOOLS / "kafka" / "pom.xml").read_text()
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if not m:
        raise BootstrapError("tools/kafka/pom.xml has no <kafka.version> property")
    return m.group(1).strip()


def step_kafka(force: bool = False) -> None:
    pom = TOOLS / "kafka" / "pom.xml"
    version = kafka_version()
    want = {"version": version, "inputs": _sha(pom)}
    jar = KAFKA_LIBS / f"kafka_2.13-{version}.jar"
    if not force and jar.exists() and _stamp_ok("kafka", want):
        log(f"kafka {version}: up to date ({KAFKA_LIBS})")
    else:
        _need("mvn", "fetch Kafka from Maven Central")
        _need("java", "run Kafka")
        log(f"kafka {version}: copying org.apache.kafka:kafka_2.13, kafka-tools and a Log4j2 binding into {KAFKA_LIBS}")
        if KAFKA_LIBS.exists():
            shutil.rmtree(KAFKA_LIBS)  # no stale jars of another version on the classpath
        KAFKA_LIBS.mkdir(parents=True)
        _run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-Dkafka.libs={KAFKA_LIBS}"],
            f"fetching Kafka {version} jars with Maven (tools/kafka/pom.xml)",
        )
        if not jar.exists():
            raise BootstrapError(f"Maven finished but {jar.name} is not in {KAFKA_LIBS}")
        _write_stamp("kafka", {**want, "jars": len(list(KAFKA_LIBS.glob("*.jar")))})
        log(f"kafka {version}: {len(list(KAFKA_LIBS.glob('*.jar')))} jars")
    # the admin/consumer helper used by tools/kafka_node.py
    src = TOOLS / "kafka" / "TaskflowKafkaTool.java"
    want_tool = {"inputs": _sha(src), "kafka": version}
    if not force and (KAFKA_CLASSES / "TaskflowKafkaTool.class").exists() and _stamp_ok("kafka-tool", want_tool):
        log("kafka helper: up to date")
        return
    _need("javac", "compile tools/kafka/TaskflowKafkaTool.java")
    if KAFKA_CLASSES.exists():
        shutil.rmtree(KAFKA_CLASSES)
    KAFKA_CLASSES.mkdir(parents=True)
    _run(
        ["javac", "-nowarn", "-cp", str(KAFKA_LIBS / "*"), "-d", str(KAFKA_CLASSES), str(src)],
        "compiling tools/kafka/TaskflowKafkaTool.java",
    )
    _write_stamp("kafka-tool", want_tool)
    log("kafka helper: compiled")


def step_crds(force: bool = False) -> None:
    """Upstream CRDs into .cache/crds/ (tools/crds.py: pinned Go modules, Strimzi's from Maven Central)."""
    import crds

    want = {"inputs": crds.inputs_digest()}
    if not force and (crds.CRD_DIR / crds.MANIFEST_NAME).exists() and _stamp_ok("crds", want):
        log(f"crds: up to date ({crds.CRD_DIR})")
        return
    log(f"crds: copying upstream CRDs into {crds.CRD_DIR}")
    try:
        manifest = crds.sync(log=log)
    except crds.CrdError as e:
        raise BootstrapError(str(e)) from e
    _write_stamp("crds", {**want, "files": len(manifest["crds"]), "skipped": len(manifest["skipped"])})
    for s in manifest["skipped"]:
        log(f"crds: SKIPPED {', '.join(s['kinds'])}: {s['reason']}")
    log(f"crds: {len(manifest['crds'])} files")


# order matters: helm right after daprd (other work waits for .cache/bin/helm); Kafka is quick.
# The cluster's binaries (dapr control plane, knative, coredns) are only built when asked for.
STEPS = {
    "daprd": step_daprd,
    "helm": step_helm,
    "kafka": step_kafka,
    "crds": step_crds,
    "dapr": step_dapr,
    "knative": step_knative,
    "coredns": step_coredns,
    "kubernetes": step_kubernetes,
    "pause": step_pause,
    "traefik": step_traefik,
}
CLUSTER_STEPS = ("helm", "kafka", "crds", "kubernetes", "pause", "traefik", "dapr", "knative", "coredns")
DEFAULT_STEPS = ("daprd", "helm", "kafka", "crds")


def bootstrap(steps: list[str] | None = None, force: bool = False) -> None:
    """Run the given steps (the local stack's, DEFAULT_STEPS, by default). Raises BootstrapError
    naming what failed."""
    for name in steps or list(DEFAULT_STEPS):
        try:
            STEPS[name](force=force)
        except BootstrapError as e:
            raise BootstrapError(f"step '{name}': {e}") from e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("steps", nargs="*", choices=[*STEPS, []], help=f"steps to run (default: {' '.join(DEFAULT_STEPS)})")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        bootstrap(args.steps or None, force=args.force)
    except BootstrapError as e:
        print(f"[bootstrap] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    log(f"all done in {time.monotonic() - t0:.0f}s; binaries in {BIN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
