#!/usr/bin/env python3
"""Build every container image TaskFlow's cluster runs, here, without any container registry
(stdlib only, idempotent).

    python tools/images.py build                  # every image
    python tools/images.py build taskflow knative # some images (their bases are built too)
    python tools/images.py list                   # names, refs and what is built
    python tools/images.py import --address /run/containerd/containerd.sock [--namespace k8s.io]

Images (all under the ``dev.local`` registry host, which Knative does not resolve to digests):

    debian      dev.local/taskflow/debian:bookworm       debootstrap --variant=minbase + ca-certificates, tzdata
    python      dev.local/taskflow/python:3.11-bookworm  + Debian's python3 (3.11), python3-venv, python-is-python3
    taskflow    dev.local/taskflow/taskflow:<appVersion> the project's Dockerfile on the python image
    static      dev.local/taskflow/static:bookworm       FROM scratch: CA certificates, tzdata, passwd with
                                                         nonroot (65532): the base of the static Go binaries
    daprd, dapr-operator, dapr-injector, dapr-sentry     dev.local/dapr/<name>:1.18.2 (binary at /<name>)
    knative-{controller,webhook,autoscaler,activator,queue}
                dev.local/knative/<name>:v0.42.2         /ko-app/<name>, as ko lays it out
    otelcol     dev.local/taskflow/otelcol-taskflow:0.161.0  /otelcol-taskflow, the collector of tools/otelcol
                                                         (the chart's monitoring.collector)
    moto        dev.local/taskflow/moto:<moto version>   moto's server (PyPI ``moto[server]``, the version and
                                                         dependencies of requirements-dev.lock) on the python
                                                         image, as 65532: the S3 stand-in of the cluster tests
    coredns     dev.local/coredns/coredns:v1.15.0        /coredns with cap_net_bind_service, as upstream's image:
                                                         its pod must add NET_BIND_SERVICE (as CoreDNS's own
                                                         manifests do); with every capability dropped the
                                                         kernel refuses to exec it ("operation not permitted")

The Go binaries come from ``tools/bootstrap.py`` (steps daprd, dapr, knative, coredns, otelcol), which this
script runs when a binary image is asked for. Every static image runs as the non-root user 65532, as
upstream's distroless images do.

Outputs: ``.cache/images/<safe-name>.tar`` (docker archive, what ``ctr images import`` takes) and
``.cache/images/index.json`` {ref: {"archive", "inputs", ...}}; an image is rebuilt only when its
inputs (Containerfile, binary or build context digest, base image inputs) changed, so a warm run
takes seconds and never calls podman. The debootstrap'd root filesystem is cached in
``.cache/images/rootfs/``: delete it to take the Debian point release and security updates again
(``--force`` rebuilds the images, not the rootfs).

Needs root, podman and debootstrap (installed with apt-get when missing), network access to a
Debian mirror and to PyPI (the Dockerfile's pip install). podman runs with ``--runtime runc`` and
raised ulimits (crun fails here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
CACHE = REPO / ".cache"
IMAGES = CACHE / "images"
INDEX = IMAGES / "index.json"
ROOTFS = IMAGES / "rootfs"
BUILD = IMAGES / "build"

sys.path.insert(0, str(TOOLS))
import build_web  # noqa: E402

import bootstrap  # noqa: E402  (tools/ is not a package)

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("TASKFLOW_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY = os.environ.get("TASKFLOW_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
DEBIAN_INCLUDE = ("ca-certificates", "tzdata")
NONROOT = "65532:65532"  # distroless "nonroot", what dapr, knative (ko) and coredns images run as

PODMAN_RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
# apt and pip inside builds need the network: podman's default network first; when a build fails
# with it, once more with the host's (set TASKFLOW_IMAGE_BUILD_NETWORK=host to go there directly).
BUILD_NETWORK = os.environ.get("TASKFLOW_IMAGE_BUILD_NETWORK", "")


class ImageError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


# --------------------------------------------------------------------------------------- helpers


def _run(cmd: list[str], what: str, *, timeout: int = 3600, quiet: bool = False) -> str:
    if not quiet:
        log(f"  $ {' '.join(cmd)}")
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise ImageError(f"{what}: timed out after {timeout}s") from e
    except OSError as e:
        raise ImageError(f"{what}: {e}") from e
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip()
        raise ImageError(f"{what} failed (exit {res.returncode}):\n{out[-4000:]}")
    if not quiet:
        log(f"  done in {time.monotonic() - t0:.1f}s")
    return res.stdout


def _apt_install(*packages: str) -> None:
    """Install Debian packages the image builds need (root only; apt-get update once if needed)."""
    log(f"installing {' '.join(packages)} with apt-get")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ImageError(f"apt-get install {' '.join(packages)} failed:\n{(res.stdout + res.stderr)[-2000:]}")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if os.geteuid() != 0:
        raise ImageError(f"'{tool}' is not on PATH; install the Debian package {package} (needs root)")
    _apt_install(package)
    path = shutil.which(tool)
    if not path:
        raise ImageError(f"'{tool}' still not on PATH after installing {package}")
    return path


def podman() -> list[str]:
    """The podman command line every call here uses."""
    _need("runc", "runc")
    return [_need("podman", "podman"), "--runtime", "runc"]


def _sha_bytes(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()[:20]


_DIGESTS = IMAGES / "file-digests.json"


def _file_sha(path: Path, memo: dict[str, list[object]]) -> str:
    """sha256 of a (large) file, remembered by (size, mtime) so warm runs do not re-read binaries."""
    st = path.stat()
    key = str(path)
    hit = memo.get(key)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return str(hit[2])
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    memo[key] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
    return h.hexdigest()


def _tree_sha(paths: Iterable[Path], memo: dict[str, list[object]]) -> str:
    """Digest of files (recursively), skipping bytecode and build litter (as .dockerignore does)."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            if "__pycache__" in f.parts or f.suffix == ".pyc" or any(p.endswith(".egg-info") for p in f.parts):
                continue
            h.update(rel.encode() + b"\0" + _file_sha(f, memo).encode() + b"\0")
    return h.hexdigest()[:20]


def safe_name(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", ref)


def chart_app_version() -> str:
    text = (REPO / "helm" / "taskflow" / "Chart.yaml").read_text()
    m = re.search(r"""(?m)^appVersion:\s*["']?([^"'\s]+)""", text)
    if not m:
        raise ImageError("helm/taskflow/Chart.yaml has no appVersion")
    return m.group(1)


# --------------------------------------------------------------------------------------- images


@dataclass
class Image:
    name: str
    ref: str
    base: str | None  # name of the image this one is built FROM (must be in podman's storage)
    containerfile: Callable[[], str] = field(repr=False)
    context: Callable[[Path], None] = field(repr=False)  # fills the build context directory
    inputs: Callable[[dict[str, list[object]]], str] = field(repr=False)  # digest of what goes in
    binaries: tuple[str, ...] = ()  # bootstrap steps whose binaries this image needs
    dockerfile: Path | None = None  # build with this file and REPO as context instead
    build_args: dict[str, str] = field(default_factory=dict)
    pip: bool = False  # RUN steps call pip: give them the host's CA bundle (see _pip_trust)


def _no_context(_: Path) -> None:
    return None


def _debian_containerfile() -> str:
    return ""  # imported from the debootstrap rootfs, see _build_debian


def _python_containerfile() -> str:
    return f"""FROM {REF["debian"]}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv python-is-python3 \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \\
 && python --version \
 && printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf
ENV LANG=C.UTF-8
CMD ["python3"]
"""


def _static_containerfile() -> str:
    # A distroless-like root: CA bundle, zoneinfo, passwd/group with root, nobody and nonroot.
    return f"""FROM {REF["debian"]} AS rootfs
RUN set -eu; \\
    mkdir -p /out/etc/ssl/certs /out/usr/share /out/tmp /out/home/nonroot /out/var/run; \\
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \\
    cp -a /usr/share/zoneinfo /out/usr/share/; \\
    printf '%s\\n' root:x:0:0:root:/root:/sbin/nologin nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin \\
      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin > /out/etc/passwd; \\
    printf 'root:x:0:\\nnobody:x:65534:\\nnonroot:x:65532:\\n' > /out/etc/group; \\
    printf 'hosts: files dns\\n' > /out/etc/nsswitch.conf; \\
    chmod 1777 /out/tmp; chown 65532:65532 /out/home/nonroot
FROM scratch
COPY --from=rootfs /out/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER {NONROOT}
"""


def _binary_image(name: str, ref: str, step: str, binary: Path, path: str) -> Image:
    def containerfile() -> str:
        return f"""FROM {REF["static"]}
COPY {binary.name} {path}
USER {NONROOT}
ENTRYPOINT ["{path}"]
"""

    def context(ctx: Path) -> None:
        dst = ctx / binary.name
        shutil.copyfile(binary, dst)
        dst.chmod(0o555)

    def inputs(memo: dict[str, list[object]]) -> str:
        return _sha_bytes(containerfile(), _file_sha(binary, memo), _inputs_of("static", memo))

    return Image(name, ref, "static", containerfile, context, inputs, binaries=(step,))


def _coredns_image() -> Image:
    """Like upstream's: /coredns may bind port 53 as a non-root user (file capability
    cap_net_bind_service, set in a build stage and carried by COPY), CA certs, user nonroot."""
    name, ref, binary = "coredns", f"dev.local/coredns/coredns:{bootstrap.COREDNS_VERSION}", bootstrap.COREDNS
    # struct vfs_cap_data, revision 2: effective flag, permitted = CAP_NET_BIND_SERVICE (bit 10)
    setcap = (
        "import os, struct; os.setxattr('/coredns', 'security.capability', "
        "struct.pack('<5I', 0x02000001, 1 << 10, 0, 0, 0))"
    )

    def containerfile() -> str:
        return f"""FROM {REF["python"]} AS caps
COPY coredns /coredns
RUN python3 -c "{setcap}"
FROM {REF["static"]}
COPY --from=caps /coredns /coredns
USER {NONROOT}
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]
"""

    def context(ctx: Path) -> None:
        dst = ctx / "coredns"
        shutil.copyfile(binary, dst)
        dst.chmod(0o555)

    def inputs(memo: dict[str, list[object]]) -> str:
        return _sha_bytes(
            containerfile(), _file_sha(binary, memo), _inputs_of("static", memo), _inputs_of("python", memo)
        )

    return Image(name, ref, "static", containerfile, context, inputs, binaries=("coredns",))


MOTO_LOCK = REPO / "requirements-dev.lock"  # moto[server] and its dependencies, pinned as for the tests


def moto_version() -> str:
    found = re.search(r"^moto==(\S+)$", MOTO_LOCK.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"{MOTO_LOCK} pins no moto")
    return found.group(1)


def _moto_image() -> Image:
    """The cluster tests' object store: moto's server (S3 and Secrets Manager), pip-installed from
    PyPI into a venv on the python image with requirements-dev.lock as constraints."""

    def containerfile() -> str:
        return f"""FROM {REF["python"]}
COPY constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/moto \\
 && /opt/moto/bin/pip install --no-cache-dir -c /tmp/constraints.txt "moto[server]=={moto_version()}" \\
 && rm /tmp/constraints.txt
USER {NONROOT}
EXPOSE 5000
ENTRYPOINT ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "5000"]
"""

    def context(ctx: Path) -> None:
        shutil.copyfile(MOTO_LOCK, ctx / "constraints.txt")

    def inputs(memo: dict[str, list[object]]) -> str:
        return _sha_bytes(containerfile(), _file_sha(MOTO_LOCK, memo), _inputs_of("python", memo))

    ref = f"dev.local/taskflow/moto:{moto_version()}"
    return Image("moto", ref, "python", containerfile, context, inputs, pip=True)


def _taskflow_context_inputs(memo: dict[str, list[object]]) -> str:
    paths = [
        REPO / "Dockerfile",
        REPO / ".dockerignore",
        REPO / "pyproject.toml",
        REPO / "README.md",
        REPO / "shared",
        REPO / "functions",
        REPO / "docker" / "requirements.lock",
        REPO / "docker" / "entrypoint.sh",
        REPO / "web" / "dist",
    ]
    return _tree_sha([p for p in paths if p.exists()], memo)


def _define() -> dict[str, Image]:
    app = chart_app_version()
    dapr_tag = bootstrap.DAPR_VERSION
    kn_tag = bootstrap.KNATIVE_VERSION
    REF.update(
        {
            "debian": f"dev.local/taskflow/debian:{DEBIAN_SUITE}",
            "python": f"dev.local/taskflow/python:3.11-{DEBIAN_SUITE}",
            "static": f"dev.local/taskflow/static:{DEBIAN_SUITE}",
        }
    )
    images: dict[str, Image] = {
        "debian": Image(
            "debian",
            REF["debian"],
            None,
            _debian_containerfile,
            _no_context,
            lambda memo: _sha_bytes(
                "debian", _debootstrap_key(), _file_sha(_rootfs_tar(), memo) if _rootfs_tar().exists() else "none"
            ),
        ),
        "python": Image(
            "python",
            REF["python"],
            "debian",
            _python_containerfile,
            _no_context,
            lambda memo: _sha_bytes(_python_containerfile(), _inputs_of("debian", memo)),
        ),
        "static": Image(
            "static",
            REF["static"],
            "debian",
            _static_containerfile,
            _no_context,
            lambda memo: _sha_bytes(_static_containerfile(), _inputs_of("debian", memo)),
        ),
        "taskflow": Image(
            "taskflow",
            f"dev.local/taskflow/taskflow:{app}",
            "python",
            lambda: "",
            _no_context,
            lambda memo: _sha_bytes(
                "taskflow", f"PYTHON_IMAGE={REF['python']}", _taskflow_context_inputs(memo), _inputs_of("python", memo)
            ),
            dockerfile=REPO / "Dockerfile",
            build_args={"PYTHON_IMAGE": REF["python"]},
            pip=True,
        ),
        "daprd": _binary_image("daprd", f"dev.local/dapr/daprd:{dapr_tag}", "daprd", bootstrap.DAPRD, "/daprd"),
    }
    for cmd in bootstrap.DAPR_CONTROL_PLANE:
        images[f"dapr-{cmd}"] = _binary_image(
            f"dapr-{cmd}", f"dev.local/dapr/{cmd}:{dapr_tag}", "dapr", bootstrap.DAPR_BIN / cmd, f"/{cmd}"
        )
    for cmd in bootstrap.KNATIVE_COMMANDS:
        images[f"knative-{cmd}"] = _binary_image(
            f"knative-{cmd}",
            f"dev.local/knative/{cmd}:{kn_tag}",
            "knative",
            bootstrap.KNATIVE_BIN / cmd,
            f"/ko-app/{cmd}",
        )
    images["coredns"] = _coredns_image()
    images["moto"] = _moto_image()
    # the chart's OpenTelemetry Collector (monitoring.collector.enabled): the local stack's build
    images["otelcol"] = _binary_image(
        "otelcol",
        f"dev.local/taskflow/otelcol-taskflow:{bootstrap.OTELCOL_VERSION}",
        "otelcol",
        bootstrap.OTELCOL,
        "/otelcol-taskflow",
    )
    REF.update({n: i.ref for n, i in images.items()})
    return images


REF: dict[str, str] = {}
_IMAGES: dict[str, Image] = {}
_INPUTS: dict[str, str] = {}


def images() -> dict[str, Image]:
    """Every image this script builds, by short name."""
    if not _IMAGES:
        _IMAGES.update(_define())
    return _IMAGES


def ref(name: str) -> str:
    """The image reference of a short name (``ref('knative-queue')``)."""
    return images()[name].ref


GROUPS = {
    "dapr": ("daprd", "dapr-operator", "dapr-injector", "dapr-sentry"),
    "knative": tuple(f"knative-{c}" for c in bootstrap.KNATIVE_COMMANDS),
    "bases": ("debian", "python", "static"),
}


def _inputs_of(name: str, memo: dict[str, list[object]]) -> str:
    if name not in _INPUTS:
        _INPUTS[name] = images()[name].inputs(memo)
    return _INPUTS[name]


# --------------------------------------------------------------------------------------- debian


def _debootstrap_key() -> str:
    return _sha_bytes(DEBIAN_SUITE, "minbase", ",".join(DEBIAN_INCLUDE), DEBIAN_MIRROR, DEBIAN_SECURITY, "v2-slim")


def _rootfs_tar() -> Path:
    return ROOTFS / f"debian-{DEBIAN_SUITE}-minbase-{_debootstrap_key()}.tar"


# What Debian's own "slim" images leave out (debuerreotype --slimify): docs but their copyright
# files, man and info pages, translations. dpkg keeps leaving them out for later installs.
SLIM_EXCLUDE = (
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/groff/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/*",
)
SLIM_INCLUDE = ("/usr/share/doc/*/copyright",)


def _slim(root: Path) -> None:
    conf = root / "etc/dpkg/dpkg.cfg.d/taskflow-slim"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "".join(f"path-exclude {p}\n" for p in SLIM_EXCLUDE) + "".join(f"path-include {p}\n" for p in SLIM_INCLUDE)
    )
    for pattern in SLIM_EXCLUDE:
        for path in root.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                if pattern.startswith("/usr/share/doc/"):
                    for f in path.rglob("*"):
                        if (f.is_file() or f.is_symlink()) and f.name != "copyright":
                            f.unlink()
                else:
                    shutil.rmtree(path)
            else:
                path.unlink()


def _debootstrap() -> Path:
    """The minbase root filesystem as a tarball (cached: debootstrap is the slow part)."""
    tar = _rootfs_tar()
    if tar.exists():
        return tar
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root")
    _need("debootstrap", "debootstrap")
    ROOTFS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=ROOTFS) as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {DEBIAN_MIRROR} (a minute or two)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_INCLUDE)}",
                DEBIAN_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            "debootstrap",
            timeout=1800,
        )
        # apt sources as Debian's own images have them (updates and security too); no caches.
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(
            f"Types: deb\nURIs: {DEBIAN_MIRROR}\nSuites: {DEBIAN_SUITE} {DEBIAN_SUITE}-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {DEBIAN_SECURITY}\nSuites: {DEBIAN_SUITE}-security\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        for d in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "tmp", "debootstrap"):
            target = root / d
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    elif child.name not in {"lock", "partial"}:
                        child.unlink()
        for gone in ("var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"):
            (root / gone).unlink(missing_ok=True)
        _slim(root)
        part = tar.with_suffix(".part")
        _run(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-cf", str(part), "."], "tar the rootfs")
        part.rename(tar)
    for old in ROOTFS.glob(f"debian-{DEBIAN_SUITE}-minbase-*.tar"):
        if old != tar:
            old.unlink()
    log(f"rootfs: {tar} ({tar.stat().st_size / 1e6:.0f} MB)")
    return tar


# --------------------------------------------------------------------------------------- build


def _load_index() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(INDEX.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_index(index: dict[str, dict[str, object]]) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    tmp = INDEX.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    tmp.rename(INDEX)


def _up_to_date(img: Image, index: dict[str, dict[str, object]], memo: dict[str, list[object]]) -> bool:
    entry = index.get(img.ref)
    if not entry:
        return False
    archive = Path(str(entry.get("archive", "")))
    return archive.is_file() and entry.get("inputs") == _inputs_of(img.name, memo)


def _in_storage(ref_: str) -> bool:
    return subprocess.run([*podman(), "image", "exists", ref_], capture_output=True, check=False).returncode == 0


def _ensure_in_storage(img: Image, index: dict[str, dict[str, object]]) -> None:
    """A base image must be in podman's storage to build FROM it: load its archive if needed."""
    if _in_storage(img.ref):
        return
    archive = Path(str(index[img.ref]["archive"]))
    log(f"loading {img.ref} into podman from {archive.name}")
    _run([*podman(), "load", "-q", "-i", str(archive)], f"podman load {archive}")


def load(names: list[str] | None = None) -> None:
    """Make built images (by short name; all by default) present in podman's storage, loading
    their archives where needed (a warm cache restored without podman's storage)."""
    index = _load_index()
    for n in resolve(names):
        img = images()[n]
        if img.ref not in index:
            raise ImageError(f"{img.ref} is not built (python tools/images.py build {n})")
        _ensure_in_storage(img, index)


def _save(img: Image) -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    archive = IMAGES / f"{safe_name(img.ref)}.tar"
    part = archive.with_suffix(".part")
    part.unlink(missing_ok=True)
    _run(
        [*podman(), "save", "-q", "--format", "docker-archive", "-o", str(part), img.ref],
        f"podman save {img.ref}",
        quiet=True,
    )
    part.rename(archive)
    return archive


def _build_debian(img: Image) -> None:
    tar = _debootstrap()
    _run(
        [
            *podman(),
            "import",
            "-q",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["/bin/bash"]',
            str(tar),
            img.ref,
        ],
        f"podman import {tar.name}",
    )


def _host_ca_bundle() -> Path | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _pip_trust() -> list[str]:
    """A bind mount (RUN steps only, never committed to the image) of the host's CA bundle over the
    image's, so that pip inside the build trusts what the host trusts (a TLS-inspecting proxy's CA,
    say). The python image's /etc/pip.conf points pip at that system bundle, as Debian's pip does."""
    bundle = _host_ca_bundle()
    return ["--volume", f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"] if bundle else []


def _podman_build(img: Image, containerfile: Path, context: Path) -> None:
    flags = ["build", *PODMAN_RUN_FLAGS, "--pull=never", "--layers", "-t", img.ref]
    if img.pip:
        flags += _pip_trust()
    for k, v in img.build_args.items():
        flags += ["--build-arg", f"{k}={v}"]
    cmd = [*podman(), *flags, "-f", str(containerfile), str(context)]
    if BUILD_NETWORK:
        _run([*cmd[:-1], f"--network={BUILD_NETWORK}", cmd[-1]], f"podman build {img.ref}")
        return
    try:
        _run(cmd, f"podman build {img.ref}")
    except ImageError as e:
        log(f"  failed with podman's default network; again with the host's ({str(e).splitlines()[-1][:200]})")
        _run([*cmd[:-1], "--network=host", cmd[-1]], f"podman build {img.ref} (host network)")


def _build_podman(img: Image) -> None:
    if img.dockerfile is not None:
        _podman_build(img, img.dockerfile, REPO)
        return
    ctx = BUILD / img.name
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    try:
        (ctx / "Containerfile").write_text(img.containerfile())
        img.context(ctx)
        _podman_build(img, ctx / "Containerfile", ctx)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def _closure(names: Iterable[str]) -> list[str]:
    """The asked images and their bases, bases first."""
    all_ = images()
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        img = all_[n]
        if img.base:
            visit(img.base)
        if n == "coredns":
            visit("python")
        order.append(n)

    for n in names:
        visit(n)
    return order


def resolve(names: Iterable[str] | None) -> list[str]:
    """Short names, groups (dapr, knative, bases) or refs to short names."""
    all_ = images()
    if not names:
        return list(all_)
    by_ref = {i.ref: n for n, i in all_.items()}
    out: list[str] = []
    for n in names:
        if n in GROUPS:
            out += GROUPS[n]
        elif n in all_:
            out.append(n)
        elif n in by_ref:
            out.append(by_ref[n])
        else:
            raise ImageError(f"unknown image {n!r}; known: {', '.join([*all_, *GROUPS])}")
    return out


def build(names: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Build (or find up to date) the named images and their bases; returns {ref: archive}."""
    t_all = time.monotonic()
    memo: dict[str, list[object]] = {}
    try:
        memo = json.loads(_DIGESTS.read_text())
    except (OSError, ValueError):
        memo = {}
    wanted = _closure(resolve(names))
    all_ = images()
    steps = sorted({s for n in wanted for s in all_[n].binaries}, key=list(bootstrap.STEPS).index)
    if "taskflow" in wanted:
        build_web.build()  # the image serves the web app: web/dist must exist and be current
    if steps:
        log(f"binaries: tools/bootstrap.py {' '.join(steps)}")
        try:
            bootstrap.bootstrap(steps)
        except bootstrap.BootstrapError as e:
            raise ImageError(str(e)) from e
    _INPUTS.clear()
    index = _load_index()
    result: dict[str, Path] = {}
    try:
        for n in wanted:
            img = all_[n]
            if not force and _up_to_date(img, index, memo):
                result[img.ref] = Path(str(index[img.ref]["archive"]))
                log(f"{img.ref}: up to date")
                continue
            for dep in (img.base, "python" if n == "coredns" else None):
                if dep:
                    _ensure_in_storage(all_[dep], index)
            log(f"{img.ref}: building")
            t0 = time.monotonic()
            if n == "debian":
                _build_debian(img)
            else:
                _build_podman(img)
            archive = _save(img)
            _INPUTS.pop(n, None)  # the debian image's inputs include the rootfs made just now
            took = time.monotonic() - t0
            size = archive.stat().st_size
            index[img.ref] = {
                "archive": str(archive),
                "inputs": _inputs_of(n, memo),
                "name": n,
                "size": size,
                "build_seconds": round(took, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _save_index(index)
            result[img.ref] = archive
            log(f"{img.ref}: built in {took:.0f}s, {size / 1e6:.1f} MB ({archive.name})")
    finally:
        IMAGES.mkdir(parents=True, exist_ok=True)
        _DIGESTS.write_text(json.dumps(memo))
    log(f"{len(result)} image(s) ready in {time.monotonic() - t_all:.1f}s ({IMAGES})")
    return result


# --------------------------------------------------------------------------------------- containerd

LABEL = "dev.taskflow.inputs"


def _ctr(address: str, namespace: str) -> list[str]:
    return [_need("ctr", "containerd"), "--address", address, "--namespace", namespace]


def import_into_containerd(
    address: str, namespace: str = "k8s.io", refs: list[str] | None = None, *, snapshotter: str | None = None
) -> None:
    """Import the built images (all in the index, or ``refs``) into containerd with ``ctr``.

    An image already there with the same inputs label is skipped, so a warm import takes a second.
    """
    t_all = time.monotonic()
    index = _load_index()
    wanted = refs or [r for r in index if index[r].get("name") not in GROUPS["bases"]]
    missing = [r for r in wanted if r not in index or not Path(str(index[r]["archive"])).is_file()]
    if missing:
        raise ImageError(f"not built (run `python tools/images.py build`): {', '.join(missing)}")
    ctr = _ctr(address, namespace)
    have: dict[str, str] = {}
    for line in _run([*ctr, "images", "ls"], "ctr images ls", quiet=True).splitlines()[1:]:
        cols = line.split()
        if cols:
            labels = dict(kv.split("=", 1) for kv in cols[-1].split(",") if "=" in kv)
            have[cols[0]] = labels.get(LABEL, "")
    done = 0
    for r in wanted:
        inputs = str(index[r]["inputs"])
        if have.get(r) == inputs:
            continue
        archive = str(index[r]["archive"])
        extra = ["--snapshotter", snapshotter] if snapshotter else []
        t0 = time.monotonic()
        _run([*ctr, "images", "import", *extra, archive], f"ctr images import {archive}", quiet=True)
        _run([*ctr, "images", "label", r, f"{LABEL}={inputs}"], f"ctr images label {r}", quiet=True)
        log(f"imported {r} into containerd ({namespace}) in {time.monotonic() - t0:.1f}s")
        done += 1
    log(
        f"containerd at {address}: {done} imported, {len(wanted) - done} already there "
        f"({time.monotonic() - t_all:.1f}s)"
    )


# --------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build images (default: all)")
    b.add_argument("names", nargs="*", help="short names, groups (dapr, knative, bases) or refs")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sub.add_parser("list", help="list the images and what is built")
    i = sub.add_parser("import", help="import built images into containerd")
    i.add_argument("--address", default="/run/containerd/containerd.sock")
    i.add_argument("--namespace", default="k8s.io")
    i.add_argument("--snapshotter", default=None)
    i.add_argument("refs", nargs="*")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.names or None, force=args.force)
        elif args.cmd == "list":
            index = _load_index()
            for n, img in images().items():
                entry = index.get(img.ref)
                state = f"{int(str(entry['size'])) / 1e6:.1f} MB" if entry else "not built"
                print(f"{n:20} {img.ref:48} {state}")
        else:
            import_into_containerd(args.address, args.namespace, args.refs or None, snapshotter=args.snapshotter)
    except ImageError as e:
        print(f"[images] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
