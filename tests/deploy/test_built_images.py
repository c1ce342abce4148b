"""The container images tools/images.py builds, built and run for real with podman (runc).

TaskFlow's image is built here (debootstrap'd Debian, Debian's Python 3.11, the project's
Dockerfile) and must serve /healthz as its non-root user with a read-only root filesystem, and
import every function target. The static-binary images (daprd, Dapr's control plane, Knative,
CoreDNS) are checked when they are built (the cluster build makes them; building them here would
mean minutes of Go builds): non-root, the entrypoint runs, the version is the pinned one. The
containerd import runs against a private containerd started by the test.

Needs root and podman (tools/images.py installs podman and debootstrap with apt-get).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.blackbox import free_port
from tests.toolmodules import load_tool

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("tasks_api", "event_fanout", "reminder_dispatch", "notifier", "recurrence", "audit")

pytestmark = pytest.mark.images

if os.geteuid() != 0:
    pytest.skip("building images needs root (debootstrap, rootful podman)", allow_module_level=True)


images = load_tool("images")


def _podman_run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    cmd = [*images.podman(), "run", "--rm", *images.PODMAN_RUN_FLAGS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def taskflow() -> str:
    """TaskFlow's image, built (or found up to date) by tools/images.py."""
    built = images.build(["taskflow"])
    ref = str(images.ref("taskflow"))
    assert Path(built[ref]).is_file()
    return ref


def test_taskflow_image_serves_healthz_as_non_root_on_a_read_only_root(taskflow: str) -> None:
    port = free_port()
    name = f"taskflow-image-test-{os.getpid()}"
    run = [
        *images.podman(),
        "run",
        "-d",
        "--name",
        name,
        *images.PODMAN_RUN_FLAGS,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-e",
        "FUNCTION_TARGET=tasks_api",
        "-p",
        f"127.0.0.1:{port}:8080",
        taskflow,
    ]
    subprocess.run(run, check=True, capture_output=True, text=True, timeout=60)
    try:
        deadline = time.monotonic() + 60
        body, status = b"", 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    status, body = resp.status, resp.read()
                break
            except OSError:
                time.sleep(0.5)
        logs = subprocess.run([*images.podman(), "logs", name], capture_output=True, text=True, check=False)
        assert status == 200, logs.stdout + logs.stderr
        assert json.loads(body) == {"status": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            page, csp = resp.read(), resp.headers.get("Content-Security-Policy", "")
        assert b"<title>" in page and b'type="module"' in page, "tasks-api in the image serves the web app at /"
        assert "script-src 'self'" in csp
        user = subprocess.run(
            [*images.podman(), "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert user == "10001"
    finally:
        subprocess.run([*images.podman(), "rm", "-f", name], capture_output=True, check=False)


def test_taskflow_image_imports_every_function_target(taskflow: str) -> None:
    probe = (
        "import importlib.util, sys\n"
        "for t in sys.argv[1:]:\n"
        "    spec = importlib.util.spec_from_file_location(t, f'/app/functions/{t}/main.py')\n"
        "    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "    assert callable(getattr(mod, t)), t\n"
        "    print('ok', t)\n"
    )
    res = _podman_run("--read-only", "--entrypoint", "python", taskflow, "-c", probe, *TARGETS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [w for t in TARGETS for w in ("ok", t)]


def test_taskflow_image_is_debian_bookworm_python_311_without_a_compiler(taskflow: str) -> None:
    res = _podman_run("--entrypoint", "sh", taskflow, "-c", "cat /etc/debian_version; python --version; gcc -v")
    lines = res.stdout.splitlines()
    assert lines[0].startswith("12."), "Debian 12 (bookworm)"
    assert lines[1].startswith("Python 3.11.")
    assert res.returncode != 0 and "gcc" in res.stderr, "no compiler in the image"


def test_the_migration_command_runs_in_the_image(taskflow: str) -> None:
    """The chart's migration Job runs `python -m taskflow.cli migrate`: the CLI is in the image."""
    res = _podman_run("--read-only", taskflow, "python", "-m", "taskflow.cli", "--help")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "migrate" in res.stdout


def test_a_warm_build_is_a_stamp_check(taskflow: str) -> None:
    t0 = time.monotonic()
    images.build(["taskflow"])
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------------- static binaries

STATIC = (*images.GROUPS["dapr"], *images.GROUPS["knative"], "coredns")


def _built(name: str) -> bool:
    entry = images._load_index().get(images.ref(name))
    return bool(entry) and Path(str(entry["archive"])).is_file()


def _members(t: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every file of every layer of a docker archive."""
    manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
    out: list[tarfile.TarInfo] = []
    for layer in manifest[0]["Layers"]:
        with tarfile.open(fileobj=io.BytesIO(t.extractfile(layer).read())) as lt:  # type: ignore[union-attr]
            out += lt.getmembers()
    return out


def _config(name: str) -> dict[str, Any]:
    """The image config inside the docker archive tools/images.py wrote."""
    with tarfile.open(images._load_index()[images.ref(name)]["archive"]) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [images.ref(name)]
        return dict(json.load(t.extractfile(manifest[0]["Config"])))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", STATIC)
def test_static_binary_image_runs_as_nonroot_with_ca_certificates(name: str) -> None:
    if not _built(name):
        pytest.skip(f"{images.ref(name)} is not built (python tools/images.py build {name})")
    cfg = _config(name)["config"]
    assert cfg["User"] == "65532:65532"
    entry = cfg["Entrypoint"]
    assert len(entry) == 1 and entry[0].startswith("/")
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg["Env"]
    images.load([name])
    res = _podman_run("--entrypoint", "/bin/x", images.ref(name))  # no shell, nothing but the binary
    assert res.returncode != 0
    # the static binary itself starts (and complains about a missing flag or Kubernetes environment)
    caps = ["--cap-add", "NET_BIND_SERVICE"] if name == "coredns" else []
    res = _podman_run("--read-only", "--cap-drop", "ALL", *caps, images.ref(name), "--help", timeout=60)
    out = res.stdout + res.stderr
    assert out.strip(), f"{name} printed nothing"
    for failure in ("exec format error", "no such file or directory", "operation not permitted", "OCI runtime"):
        assert failure not in out, out
    with tarfile.open(images._load_index()[images.ref(name)]["archive"]) as t:
        files = {m.name.lstrip("./") for m in _members(t)}
    assert entry[0].lstrip("/") in files
    assert {"etc/ssl/certs/ca-certificates.crt", "etc/passwd", "usr/share/zoneinfo/UTC"} <= files
    assert not {"bin/sh", "usr/bin/sh", "bin/bash"} & files


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("daprd", ["--version"], images.bootstrap.DAPR_VERSION),
        ("coredns", ["-version"], f"CoreDNS-{images.bootstrap.COREDNS_VERSION.lstrip('v')}"),
    ],
)
def test_static_binary_image_reports_the_pinned_version(name: str, args: list[str], expected: str) -> None:
    if not _built(name):
        pytest.skip(f"{images.ref(name)} is not built")
    images.load([name])
    # /coredns's file capability needs NET_BIND_SERVICE in the bounding set (CoreDNS's manifests add it)
    caps = ["--cap-add", "NET_BIND_SERVICE"] if name == "coredns" else []
    res = _podman_run("--read-only", "--cap-drop", "ALL", *caps, images.ref(name), *args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].strip() == expected


def test_coredns_binds_port_53_as_nonroot_with_only_net_bind_service() -> None:
    """Like upstream's image: /coredns carries the cap_net_bind_service file capability."""
    if not _built("coredns"):
        pytest.skip("coredns image is not built")
    with tarfile.open(images._load_index()[images.ref("coredns")]["archive"]) as t:
        caps = [m.pax_headers.get("SCHILY.xattr.security.capability") for m in _members(t) if m.name == "coredns"]
    assert caps and caps[-1], "no security.capability xattr on /coredns"
    images.load(["coredns"])
    name = f"coredns-image-test-{os.getpid()}"
    subprocess.run(
        [
            *images.podman(),
            "run",
            "-d",
            "--name",
            name,
            *images.PODMAN_RUN_FLAGS,
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_BIND_SERVICE",
            images.ref("coredns"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        deadline = time.monotonic() + 20
        logs = ""
        while time.monotonic() < deadline and ".:53" not in logs:
            time.sleep(0.5)
            res = subprocess.run([*images.podman(), "logs", name], capture_output=True, text=True, check=False)
            logs = res.stdout + res.stderr
        assert ".:53" in logs, logs
        state = subprocess.run(
            [*images.podman(), "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True, check=True
        )
        assert state.stdout.strip() == "true", logs
    finally:
        subprocess.run([*images.podman(), "rm", "-f", name], capture_output=True, check=False)


# --------------------------------------------------------------------------------- containerd


@pytest.fixture(scope="module")
def containerd() -> Iterator[str]:
    """A private containerd (no CRI plugin), on a socket of its own, for this module only."""
    binary = images._need("containerd", "containerd")  # apt-get installs it when missing
    tmp = Path(tempfile.mkdtemp(prefix="tf-containerd-", dir="/var/tmp"))
    sock = tmp / "containerd.sock"
    (tmp / "config.toml").write_text(
        "version = 2\n"
        f'root = "{tmp}/root"\nstate = "{tmp}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        f'[debug]\n  address = "{tmp}/debug.sock"\n'
    )
    log = (tmp / "containerd.log").open("w")
    proc = subprocess.Popen([binary, "--config", str(tmp / "config.toml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert sock.exists(), (tmp / "containerd.log").read_text()
        yield str(sock)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def test_import_into_containerd_unpacks_once_and_skips_when_unchanged(taskflow: str, containerd: str) -> None:
    ctr = ["ctr", "--address", containerd, "--namespace", "k8s.io"]
    images.import_into_containerd(containerd, "k8s.io", [taskflow])
    listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in listed.splitlines() if x.startswith(taskflow + " "))
    inputs = images._load_index()[taskflow]["inputs"]
    assert f"{images.LABEL}={inputs}" in line
    check = subprocess.run([*ctr, "images", "check", f"name=={taskflow}"], capture_output=True, text=True, check=True)
    assert "complete" in check.stdout, check.stdout
    snapshots = subprocess.run([*ctr, "snapshots", "ls"], capture_output=True, text=True, check=True).stdout
    assert len(snapshots.splitlines()) > 1, "the image was not unpacked"
    t0 = time.monotonic()
    images.import_into_containerd(containerd, "k8s.io", [taskflow])
    assert time.monotonic() - t0 < 5, "a warm import must not import again"
