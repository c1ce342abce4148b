#!/usr/bin/env python3
"""Render the platform TaskFlow's cluster runs on, from the pinned Go modules, with the images
tools/images.py builds (stdlib only; go and .cache/bin/helm needed, no network once the Go module
cache is warm).

    python tools/cluster_platform.py knative [--crds-only|--core-only] > knative-serving.yaml
    python tools/cluster_platform.py dapr > dapr.yaml
    python tools/cluster_platform.py check          # render both and check every image ref is one we build

(Not named tools/platform.py, as first planned: with tools/ on sys.path that would shadow the
standard library's ``platform``, which ``uuid`` imports, and break every script in tools/.)

Knative Serving: what its release's serving-core.yaml holds (``ko resolve -R -f config/core/``),
rebuilt from the knative.dev/serving module at the version tools/knative pins. Files that are
symlinks in Serving's repository are missing from module zips, so they come from the modules they
point to, at the versions tools/knative resolves: the networking CRDs and config-network from
knative.dev/networking, the Image CRD from knative.dev/caching. ``ko://`` references become the
dev.local images; config-features gets what TaskFlow's chart needs (docs/deploy-minikube.md).

Dapr: its Helm chart (charts/dapr in the github.com/dapr/dapr module that tools/daprd pins), rendered
with .cache/bin/helm into dapr-system: local images (dev.local/dapr/*), ``IfNotPresent``, mTLS
through sentry, the sidecar injector injecting dev.local/dapr/daprd, placement (actors) and
scheduler off (TaskFlow uses neither), and the options docs/deploy-minikube.md passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import images  # noqa: E402

import bootstrap  # noqa: E402  (tools/ is not a package)

KNATIVE_NAMESPACE = "knative-serving"
DAPR_NAMESPACE = "dapr-system"
DAPR_RELEASE = "dapr"

# Knative ConfigMap keys TaskFlow's chart relies on (docs/deploy-minikube.md): the functions mount an
# emptyDir at /tmp because their root filesystem is read-only.
KNATIVE_CONFIG: dict[str, dict[str, str]] = {
    "config-features": {"kubernetes.podspec-volumes-emptydir": "enabled"},
}

# Values for Dapr's chart (docs/deploy-minikube.md passes the last two).
DAPR_VALUES: dict[str, str] = {
    "global.registry": "dev.local/dapr",
    "global.tag": bootstrap.DAPR_VERSION,
    "global.imagePullPolicy": "IfNotPresent",
    "global.mtls.enabled": "true",
    "global.actors.enabled": "false",
    "global.scheduler.enabled": "false",
    "global.ha.enabled": "false",
    "dapr_sidecar_injector.sidecarImagePullPolicy": "IfNotPresent",
    "dapr_sidecar_injector.sidecarDropALLCapabilities": "true",
    "global.logAsJson": "true",
}


class PlatformError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[cluster_platform] {msg}", file=sys.stderr, flush=True)


def module_dir(tool_module: str, module: str) -> Path:
    """Directory of ``module`` in the Go module cache, at the version ``tools/<tool_module>`` selects."""
    try:
        res = subprocess.run(
            ["go", "mod", "download", "-json", module],
            cwd=TOOLS / tool_module,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except OSError as e:
        raise PlatformError(f"go is needed to find {module}: {e}") from e
    try:
        info = json.loads(res.stdout)
    except ValueError:
        info = {}
    if res.returncode != 0 or not info.get("Dir"):
        raise PlatformError(
            f"go mod download {module} (tools/{tool_module}) failed: {(res.stdout + res.stderr)[-1000:]}"
        )
    return Path(info["Dir"])


def _docs(path: Path) -> list[str]:
    """The YAML documents of a file, without the license header and empty documents."""
    out = []
    for doc in re.split(r"(?m)^---\s*$", path.read_text()):
        body = "\n".join(line for line in doc.splitlines() if not line.startswith("#")).strip()
        if body:
            out.append(body)
    return out


def _serving_release(module_version: str) -> str:
    """knative.dev/serving v0.N.P is Knative Serving 1.(N-27).P (v0.42.2 is 1.15.2)."""
    m = re.fullmatch(r"v0\.(\d+)\.(\d+)", module_version)
    if not m:
        raise PlatformError(f"unexpected knative.dev/serving version {module_version}")
    return f"1.{int(m.group(1)) - 27}.{m.group(2)}"


def _set_config(doc: str, settings: dict[str, str]) -> str:
    """Add keys under a ConfigMap's ``data:`` (before its _example block)."""
    lines = doc.splitlines()
    try:
        i = lines.index("data:")
    except ValueError:
        lines.append("data:")
        i = len(lines) - 1
    key = re.compile(r"^  ([^\s#][^:]*):")  # data keys only, not the _example block's lines
    existing = {m.group(1) for line in lines[i + 1 :] if (m := key.match(line))}
    add = [f"  {k}: {json.dumps(v)}" for k, v in settings.items() if k not in existing]
    for k, v in settings.items():
        if k in existing:
            lines = [f"  {k}: {json.dumps(v)}" if line.startswith(f"  {k}:") else line for line in lines]
    return "\n".join(lines[: i + 1] + add + lines[i + 1 :])


def _name_of(doc: str) -> tuple[str, str]:
    kind = re.search(r"(?m)^kind:\s*(\S+)", doc)
    name = re.search(r"(?m)^metadata:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", doc + "\n")
    return (kind.group(1) if kind else "", name.group(1) if name else "")


def render_knative_serving(
    *, crds: bool = True, core: bool = True, config: dict[str, dict[str, str]] | None = None
) -> str:
    """Knative Serving's CRDs and core (namespace, RBAC, config, deployments, webhooks), CRDs first.

    ``config`` adds or overrides ConfigMap keys on top of KNATIVE_CONFIG (e.g. config-network's
    ingress-class, config-autoscaler's stable-window)."""
    serving = module_dir("knative", "knative.dev/serving")
    networking = module_dir("knative", "knative.dev/networking")
    caching = module_dir("knative", "knative.dev/caching")
    version = serving.name.split("@", 1)[1]
    release = _serving_release(version)
    core_dir = serving / "config" / "core"
    # the files Serving's repository has as symlinks (missing from the module zip)
    crd_files = [
        *sorted((core_dir / "300-resources").glob("*.yaml")),
        networking / "config" / "certificate.yaml",
        networking / "config" / "domain-claim.yaml",
        networking / "config" / "ingress.yaml",
        networking / "config" / "serverlessservice.yaml",
        caching / "config" / "image.yaml",
    ]
    core_files = [
        p
        for p in sorted(core_dir.rglob("*.yaml"), key=lambda p: p.relative_to(core_dir).as_posix())
        if "300-resources" not in p.parts
    ] + [networking / "config" / "config-network.yaml"]
    settings: dict[str, dict[str, str]] = {k: dict(v) for k, v in KNATIVE_CONFIG.items()}
    for cm, kv in (config or {}).items():
        settings.setdefault(cm, {}).update(kv)
    docs: list[str] = []
    for path in (crd_files if crds else []) + (core_files if core else []):
        for doc in _docs(path):
            kind, name = _name_of(doc)
            if kind == "ConfigMap" and name in settings:
                doc = _set_config(doc, settings[name])
            docs.append(doc)
    text = "\n---\n".join(docs) + "\n"
    text = re.sub(
        r"ko://knative\.dev/serving/cmd/([a-z-]+)",
        lambda m: images.ref(f"knative-{m.group(1)}"),
        text,
    )
    text = text.replace("app.kubernetes.io/version: devel", f'app.kubernetes.io/version: "{release}"')
    text = re.sub(
        r'(serving\.knative\.dev/release|networking\.knative\.dev/release): "?devel"?', rf'\1: "v{release}"', text
    )
    header = f"# Knative Serving {release} (knative.dev/serving {version}), rendered by tools/cluster_platform.py\n"
    return f"{header}---\n{text}"


def render_dapr_control_plane(extra_values: dict[str, str] | None = None) -> str:
    """Dapr's control plane (operator, sidecar injector, sentry) and CRDs from its Helm chart."""
    chart = module_dir("daprd", "github.com/dapr/dapr") / "charts" / "dapr"
    if not chart.is_dir():
        raise PlatformError(f"no Helm chart at {chart}")
    helm = bootstrap.HELM
    if not helm.exists():
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the manifest
            bootstrap.bootstrap(["helm"])
    values = {**DAPR_VALUES, **(extra_values or {})}
    cmd = [str(helm), "template", DAPR_RELEASE, str(chart), "--namespace", DAPR_NAMESPACE, "--include-crds"]
    for k, v in values.items():
        cmd += ["--set-string" if k == "global.tag" else "--set", f"{k}={v}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise PlatformError(f"helm template of Dapr's chart failed:\n{res.stderr[-2000:]}")
    namespace = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {DAPR_NAMESPACE}\n"
    header = (
        f"# Dapr {bootstrap.DAPR_VERSION} control plane (charts/dapr of github.com/dapr/dapr), "
        "rendered by tools/cluster_platform.py\n"
    )
    return f"{header}---\n{namespace}{res.stdout}"


# --------------------------------------------------------------------------------------- checks

IMAGE_LINE = re.compile(r"""(?m)^[ \t]*(?:-[ \t]+)?(?:image|queue-sidecar-image)[ \t]*:[ \t]*["']?([^"'\s#]+)""")


SIDECAR_IMAGE_ENV = re.compile(
    r"""(?m)^[ \t]*-[ \t]+name:[ \t]*SIDECAR_IMAGE[ \t]*\n[ \t]+value:[ \t]*["']?([^"'\s#]+)"""
)


def image_refs(text: str) -> set[str]:
    """Every container image a rendered manifest names (image:, Knative's queue-sidecar-image,
    the image Dapr's injector injects)."""
    return set(IMAGE_LINE.findall(text)) | set(SIDECAR_IMAGE_ENV.findall(text))


def split_crds(text: str) -> tuple[str, str]:
    """(the CustomResourceDefinitions, everything else): apply the first, wait for them to be
    Established, then the rest (which holds custom resources of those CRDs)."""
    crds, rest = [], []
    for doc in re.split(r"(?m)^---\s*$", text):
        if not doc.strip() or all(line.startswith("#") or not line.strip() for line in doc.splitlines()):
            continue
        (crds if re.search(r"(?m)^kind:\s*CustomResourceDefinition\s*$", doc) else rest).append(doc.strip("\n"))
    return "---\n" + "\n---\n".join(crds) + "\n", "---\n" + "\n---\n".join(rest) + "\n"


def check(text: str, expect_also: set[str] | None = None) -> list[str]:
    """Problems of a rendered manifest: ko:// left, images not built by tools/images.py."""
    problems = []
    if "ko://" in text:
        problems.append("a ko:// image reference is left")
    built = {img.ref for img in images.images().values()}
    for r in sorted(image_refs(text)):
        if r not in built:
            problems.append(f"image {r} is not built by tools/images.py")
    for r in sorted((expect_also or set()) - image_refs(text)):
        problems.append(f"expected image {r} is not referenced")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("knative", help="print Knative Serving's manifests")
    g = k.add_mutually_exclusive_group()
    g.add_argument("--crds-only", action="store_true")
    g.add_argument("--core-only", action="store_true")
    sub.add_parser("dapr", help="print Dapr's control plane manifests")
    sub.add_parser("check", help="render both and check their image references")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "knative":
            sys.stdout.write(render_knative_serving(crds=not args.core_only, core=not args.crds_only))
        elif args.cmd == "dapr":
            sys.stdout.write(render_dapr_control_plane())
        else:
            problems = []
            expect = {
                "knative": {images.ref(n) for n in images.GROUPS["knative"]},
                "dapr": {images.ref(n) for n in images.GROUPS["dapr"]},
            }
            for what, text in (("knative", render_knative_serving()), ("dapr", render_dapr_control_plane())):
                found = check(text, expect[what])
                problems += [f"{what}: {p}" for p in found]
                log(f"{what}: {len(text.splitlines())} lines, images: {', '.join(sorted(image_refs(text)))}")
            for p in problems:
                log(f"PROBLEM {p}")
            return 1 if problems else 0
    except (PlatformError, bootstrap.BootstrapError) as e:
        print(f"[cluster_platform] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
