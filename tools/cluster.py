#!/usr/bin/env python3
"""A real single-node Kubernetes cluster on this machine, built here, with TaskFlow installed by Helm.

    python tools/cluster.py up            # foreground; Ctrl-C / SIGTERM tears everything down
    python tools/cluster.py up --no-taskflow    # only the node (and what the platform can add)
    python tools/cluster.py kubectl get pods -A # kubectl against the running cluster
    python tools/cluster.py down          # clean up what a killed run left behind

From Python (tests)::

    sys.path.insert(0, "tools"); from cluster import Cluster
    with Cluster(port=18080) as c:
        c.kubectl("get", "nodes")
        httpx.get(c.api_url + "/healthz")

Parts (nothing is pulled from a container registry):

- Debian packages, installed by this script when missing: containerd, runc, containernetworking-plugins,
  etcd-server, iptables, conntrack.
- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl built by
  ``tools/bootstrap.py kubernetes`` (tools/kubernetes, k8s.io/kubernetes v1.37.x) into .cache/bin/;
  the sandbox (pause) image from k8s.io/kubernetes's build/pause, compiled here (``bootstrap.py pause``).

Layout: configs, PKI, kubeconfigs, etcd data and kubelet state under .cache/cluster/; containerd's
image store under .cache/cluster/containerd (kept between runs: a warm start re-imports nothing);
containerd's socket and state under /run/taskflow-cluster. etcd starts empty every run.

Network: the node address (NODE_IP) sits on ``lo``; pods live on the bridge ``tfcni0``
(POD_CIDR, gateway POD_GATEWAY) from the CNI bridge plugin; Services in SERVICE_CIDR through
kube-proxy (iptables, masquerading all Service traffic, since pods on one bridge would otherwise see
replies from the wrong address). Pods reach the host's PostgreSQL through a TCP forwarder on the
gateway address and the host's Kafka through its pod listener (tools/kafka_node.py, POD_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import bootstrap  # noqa: E402
import kafka_node  # noqa: E402
import procs  # noqa: E402
from procs import Proc  # noqa: E402

REPO = TOOLS.parent
CACHE = REPO / ".cache"
BIN = bootstrap.BIN
STATE = CACHE / "cluster"
PKI = STATE / "pki"
LOGS = STATE / "logs"
ETCD_DATA = STATE / "etcd"
KUBELET_ROOT = STATE / "kubelet"
CONTAINERD_ROOT = STATE / "containerd"
CNI_CONF = STATE / "cni" / "net.d"
CNI_IPAM = STATE / "cni" / "ipam"
RUN = Path("/run/taskflow-cluster")
CONTAINERD_SOCK = RUN / "containerd.sock"
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
PIDS = STATE / "pids.json"

NODE_NAME = "taskflow-node"
NODE_IP = "10.200.0.1"  # on lo, so it exists before any pod and does not depend on eth0
BRIDGE = "tfcni0"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = kafka_node.POD_ADDRESS  # 10.244.0.1: pods reach the host (Kafka, PostgreSQL) here
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
API_URL = f"https://127.0.0.1:{API_PORT}"
ETCD_PORT = 23790  # not etcd's 2379/2380, which other tools on a shared machine may use
ETCD_PEER_PORT = 23800
CLOSED_PORT = 9  # registry mirrors point here: nothing listens, so nothing is ever pulled
CNI_NETWORK = "taskflow"
TRAEFIK_PRIVATE_PORT = 8091  # Traefik's cluster-local entrypoint, on NODE_IP
TRAEFIK_NAMESPACE = "traefik-system"
KNATIVE_INGRESS_CLASS = "traefik.ingress.networking.knative.dev"
PG_DATABASE = "taskflow_cluster"
PG_ROLE = "taskflow_cluster"
RELEASE = "taskflow"
CHART = REPO / "helm" / "taskflow"
SECRETS = STATE / "secrets.json"
VALUES = STATE / "values-local-cluster.yaml"

NAMESPACE = "taskflow"
PAUSE_IMAGE = f"dev.local/kubernetes/pause:{bootstrap.PAUSE_VERSION}"

APT_PACKAGES = {  # a file each package installs -> package
    "/usr/bin/containerd": "containerd",
    "/usr/sbin/runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/bin/etcd": "etcd-server",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/conntrack": "conntrack",
}
CNI_BIN = Path("/usr/lib/cni")

# set at start and left set at teardown: other tools on the machine (podman's networks) need them too,
# and turning forwarding off under them would cut their containers off
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}


class ClusterError(RuntimeError):
    pass


class GiveUp(ClusterError):
    """Raised by a `_wait` condition that can never become true."""


def log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def _run(cmd: list[str], what: str, *, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"{what}: timed out after {timeout:.0f}s") from e
    if check and res.returncode != 0:
        raise ClusterError(f"{what} failed (exit {res.returncode}): {(res.stdout + res.stderr).strip()[-3000:]}")
    return res.stdout


def _wait(what: str, ok: Callable[[], bool], timeout: float, dead: Callable[[], str | None] | None = None) -> float:
    """Poll ``ok`` until true; returns the seconds it took. ``dead`` names a process that exited."""
    t0 = time.monotonic()
    while True:
        try:
            if ok():
                return time.monotonic() - t0
        except GiveUp:
            raise
        except (OSError, ClusterError, ValueError):
            pass
        if dead is not None and (msg := dead()):
            raise ClusterError(f"{what}: {msg}")
        if time.monotonic() - t0 > timeout:
            raise ClusterError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.3)


# ------------------------------------------------------------------------------ host preparation


def ensure_packages() -> None:
    """``apt-get install -y`` the Debian packages the node needs (only when something is missing)."""
    missing = sorted({pkg for f, pkg in APT_PACKAGES.items() if not Path(f).exists()})
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterError(f"missing Debian packages {' '.join(missing)}; install them as root")
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:  # stale package lists on a fresh machine
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise ClusterError(f"apt-get install {' '.join(missing)} failed:\n{(res.stdout + res.stderr)[-3000:]}")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _ip(*args: str, check: bool = True) -> str:
    return _run(["ip", *args], f"ip {' '.join(args)}", check=check)


def setup_network() -> None:
    """sysctls, the node address on lo and the pod bridge with its gateway."""
    for key, value in SYSCTLS.items():
        p = _sysctl_path(key)
        if not p.exists():
            raise ClusterError(f"{p} does not exist (is the br_netfilter module loaded?)")
        if p.read_text().strip() != value:
            log(f"sysctl {key}={value}")
            p.write_text(value)
    if f"{NODE_IP}/32" not in _ip("-o", "addr", "show", "dev", "lo"):
        _ip("addr", "add", f"{NODE_IP}/32", "dev", "lo")
    # the CNI bridge plugin adopts an existing bridge; creating it first gives the host a stable
    # gateway address to listen on before the first pod starts
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        _ip("link", "add", BRIDGE, "type", "bridge")
    if f"{POD_GATEWAY}/" not in _ip("-o", "addr", "show", "dev", BRIDGE):
        _ip("addr", "add", f"{POD_GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def teardown_network() -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _ip("link", "del", BRIDGE, check=False)
    if f"{NODE_IP}/32" in _ip("-o", "addr", "show", "dev", "lo", check=False):
        _ip("addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)


def cleanup_iptables() -> int:
    """Remove the KUBE-* chains (kubelet, kube-proxy) and the CNI chains of our network; returns lines removed.

    Other tools' rules (podman's CNI-* chains of other networks, Docker's, ...) are left alone.
    """
    removed = 0
    for table in ("filter", "nat", "mangle"):
        res = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        if res.returncode != 0:
            continue
        lines = res.stdout.splitlines()
        ours = {m.group(1) for line in lines if (m := re.match(r":(KUBE-\S+) ", line))}
        ours |= {
            m.group(1)
            for line in lines
            if f'name: \\"{CNI_NETWORK}\\"' in line and (m := re.search(r" -j (CNI-\S+)", line))
        }
        if not ours:
            continue
        keep = []
        for line in lines:
            decl = re.match(r":(\S+) ", line)
            rule = re.match(r"-A (\S+) ", line)
            target = re.search(r" -[jg] (\S+)", line)
            if (decl and decl.group(1) in ours) or (
                rule and (rule.group(1) in ours or (target is not None and target.group(1) in ours))
            ):
                removed += 1
                continue
            keep.append(line)
        restore = subprocess.run(
            ["iptables-restore", "-T", table], input="\n".join(keep) + "\n", text=True, capture_output=True
        )
        if restore.returncode != 0:
            log(f"WARNING: could not remove the cluster's chains from the {table} table: {restore.stderr.strip()}")
    return removed


def _mounts_under(*roots: Path) -> list[str]:
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].encode().decode("unicode_escape")
            if any(target == str(r) or target.startswith(f"{r}/") for r in roots):
                out.append(target)
    return out


def unmount_all(*roots: Path) -> int:
    mounts = _mounts_under(*roots)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    return len(mounts)


# ------------------------------------------------------------------------------ PKI, kubeconfigs


def _openssl(*args: str) -> None:
    _run(["openssl", *args], f"openssl {args[0]}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _issue(name: str, subject: str, usage: str, sans: list[str] | None = None) -> None:
    """Key + certificate ``PKI/name.{key,crt}`` signed by the cluster CA."""
    key, crt, csr = PKI / f"{name}.key", PKI / f"{name}.crt", PKI / f"{name}.csr"
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = PKI / f"{name}.ext"
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    lines.append(f"extendedKeyUsage={usage}")
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(PKI / "ca.crt"), "-CAkey", str(PKI / "ca.key"),
        "-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


PKI_VERSION = "2"  # bump when the certificates' names or SANs change


def ensure_pki() -> None:
    """CA, serving and client certificates, the service-account key pair; kept between runs."""
    stamp = PKI / "stamp"
    want = f"{PKI_VERSION} {NODE_IP} {KUBERNETES_SVC_IP} {NODE_NAME}"
    if stamp.exists() and stamp.read_text() == want:
        return
    log("creating the cluster's PKI (openssl, EC P-256)")
    if PKI.exists():
        shutil.rmtree(PKI)
    PKI.mkdir(parents=True)
    PKI.chmod(0o700)
    _new_key(PKI / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", str(PKI / "ca.key"), "-subj", "/CN=taskflow-cluster-ca", "-days", "3650",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", str(PKI / "ca.crt"),
    )  # fmt: skip
    api_sans = [
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "DNS:localhost",
        "IP:127.0.0.1",
        f"IP:{NODE_IP}",
        f"IP:{KUBERNETES_SVC_IP}",
    ]
    _issue("apiserver", "/CN=kube-apiserver", "serverAuth", api_sans)
    _issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth")
    _issue("admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth")
    _issue("controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    _issue("scheduler", "/CN=system:kube-scheduler", "clientAuth")
    _issue("kube-proxy", "/CN=system:kube-proxy", "clientAuth")
    _issue("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
    _issue("kubelet-serving", f"/CN={NODE_NAME}", "serverAuth", [f"DNS:{NODE_NAME}", f"IP:{NODE_IP}", "IP:127.0.0.1"])
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(PKI / "sa.key"))
    _openssl("pkey", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    for k in PKI.glob("*.key"):
        k.chmod(0o600)
    stamp.write_text(want)


def kubeconfig_path(name: str) -> Path:
    return STATE / f"{name}.kubeconfig"


def write_kubeconfigs() -> None:
    for name in ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"):
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "taskflow", "cluster": {"server": API_URL, "certificate-authority": str(PKI / "ca.crt")}}
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "client-certificate": str(PKI / f"{name}.crt"),
                        "client-key": str(PKI / f"{name}.key"),
                    },
                }
            ],
            "contexts": [{"name": "taskflow", "context": {"cluster": "taskflow", "user": name}}],
            "current-context": "taskflow",
        }
        p = kubeconfig_path(name)
        p.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML
        p.chmod(0o600)


# ------------------------------------------------------------------------------ configs


def containerd_config() -> str:
    mirrors = "\n".join(
        f"""        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]
          endpoint = ["http://127.0.0.1:{CLOSED_PORT}"]"""
        for host in ("docker.io", "registry.k8s.io", "ghcr.io", "gcr.io", "quay.io", "dev.local", "*")
    )
    return f"""# generated by tools/cluster.py
version = 2
root = "{CONTAINERD_ROOT / "root"}"
state = "{RUN / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{CONTAINERD_SOCK}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{CONTAINERD_ROOT / "opt"}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    # root here lacks CAP_SYS_RESOURCE: lowering a container's oom_score_adj below ours fails
    restrict_oom_score_adj = true
    # containers may bind ports below 1024 without root (CoreDNS on 53)
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    enable_selinux = false
    disable_apparmor = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN}"
      conf_dir = "{CNI_CONF}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      # every registry resolves to a closed local port: an image that was not imported fails fast
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
{mirrors}
"""


def cni_config() -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(CNI_IPAM),
                },
            },
        ],
    }


def kubelet_config() -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine has cgroup v1 only
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "address": "0.0.0.0",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(PKI / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(PKI / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(PKI / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_IP],
        "resolvConf": "/etc/resolv.conf",
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "serializeImagePulls": False,
        # imported images are never pulled again: keep image GC from deleting them
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
        "streamingConnectionIdleTimeout": "30m",
    }


def kube_proxy_config() -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig_path("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "bindAddress": "0.0.0.0",
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # pods share one bridge: a reply from a Service's pod would go straight back over the bridge
        # and bypass the DNAT's reverse translation, so all Service traffic is masqueraded
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0},  # leave nf_conntrack_max alone (not ours to change)
    }


# ------------------------------------------------------------------------------ pause image


def _blob(layout: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    layout.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def write_oci_archive(dest: Path, ref: str, files: dict[str, tuple[bytes, int]], config: dict[str, object]) -> None:
    """A one-layer OCI image archive (what ``ctr images import`` reads) holding ``files`` (path -> data, mode)."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as out:
        layer_digest, layer_size = _blob(out, layer_bytes)
        cfg_digest, cfg_size = _blob(out, json.dumps(image_config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        }
        man_digest, man_size = _blob(out, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": man_digest,
                    "size": man_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, dest)


def pause_archive() -> Path:
    dest = STATE / "images" / f"pause-{bootstrap.PAUSE_VERSION}.tar"
    if not dest.exists() or dest.stat().st_mtime < bootstrap.PAUSE.stat().st_mtime:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_oci_archive(
            dest,
            PAUSE_IMAGE,
            {"pause": (bootstrap.PAUSE.read_bytes(), 0o755)},
            {"Entrypoint": ["/pause"], "User": "65535:65535"},
        )
    return dest


# ------------------------------------------------------------------------------ host-side forwarder


class TcpForwarder:
    """Forwards connections from ``listen`` to ``target`` (pods reach the host's PostgreSQL through it)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen, self.target = listen, target
        self._sock = socket.create_server(listen, reuse_port=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"forward-{listen[1]}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        self._sock.setblocking(False)
        sel.register(self._sock, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.5):
                if key.data is None:
                    try:
                        client, _addr = self._sock.accept()
                    except OSError:
                        continue
                    try:
                        upstream = socket.create_connection(self.target, timeout=5)
                    except OSError:
                        client.close()
                        continue
                    for a, b in ((client, upstream), (upstream, client)):
                        a.setblocking(False)
                        sel.register(a, selectors.EVENT_READ, b)
                    continue
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        dst.setblocking(True)
                        dst.sendall(data)
                        dst.setblocking(False)
                        continue
                    except OSError:
                        pass
                for s in (src, dst):
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(s)
                    s.close()
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


# ------------------------------------------------------------------------------ platform parts


def coredns_manifest(image: str) -> str:
    corefile = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}}
"""
    labels = {"k8s-app": "kube-dns"}
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"memory": "170Mi"},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def traefik_manifest() -> str:
    """Namespace, RBAC and the two Services Knative's Ingress status points at (Traefik runs on the node)."""
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TRAEFIK_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", "namespace": TRAEFIK_NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "taskflow-traefik-knative"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "endpoints", "secrets", "namespaces"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["networking.internal.knative.dev"],
                    "resources": ["ingresses", "ingresses/status"],
                    "verbs": ["get", "list", "watch", "update", "patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "taskflow-traefik-knative"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "taskflow-traefik-knative",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": TRAEFIK_NAMESPACE}],
        },
    ]
    for name in ("traefik-public", "traefik-private"):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": TRAEFIK_NAMESPACE},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": TRAEFIK_PRIVATE_PORT}]},
            }
        )
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "namespace": TRAEFIK_NAMESPACE,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": TRAEFIK_PRIVATE_PORT, "protocol": "TCP"}],
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def traefik_static_config(port: int, token: str) -> str:
    cfg = {
        "experimental": {"knative": True},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{port}"},
            "local": {"address": f"{NODE_IP}:{TRAEFIK_PRIVATE_PORT}"},
        },
        "providers": {
            "knative": {
                "endpoint": API_URL,
                "token": token,
                "certAuthFilePath": str(PKI / "ca.crt"),
                "publicEntrypoints": ["web"],
                "publicService": {"name": "traefik-public", "namespace": TRAEFIK_NAMESPACE},
                "privateEntrypoints": ["local"],
                "privateService": {"name": "traefik-private", "namespace": TRAEFIK_NAMESPACE},
            },
            "file": {"filename": str(STATE / "traefik-dynamic.json"), "watch": True},
        },
        "log": {"level": "INFO"},
        "accessLog": {"filePath": str(LOGS / "traefik-access.log")},
    }
    return json.dumps(cfg, indent=2)


OBJECTS_BUCKET = "taskflow-objects"
MOTO_PORT = 5000


def moto_manifest(image: str, namespace: str = NAMESPACE) -> str:
    """moto's server (S3) as a Deployment and Service: the cluster tests' object store, built here
    (tools/images.py ``moto``), under the namespace's ``restricted`` Pod Security Standard."""
    labels = {"app.kubernetes.io/name": "moto", "app.kubernetes.io/part-of": "taskflow-tests"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "moto", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "automountServiceAccountToken": False,
                    # else the kubelet sets MOTO_PORT=tcp://<ip>:5000 for this Service, which moto_server
                    # reads as its port
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": "moto",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "ports": [{"name": "http", "containerPort": MOTO_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": MOTO_PORT}, "periodSeconds": 1},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "moto", "namespace": namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": MOTO_PORT, "targetPort": MOTO_PORT}]},
    }
    return "\n---\n".join(json.dumps(o) for o in (deployment, service))


def taskflow_values(
    secrets_: dict[str, str], image_ref: str, collector_ref: str | None = None, objects_endpoint: str = ""
) -> dict[str, object]:
    """Helm values of the local cluster: host PostgreSQL and Kafka, the locally built images, the
    chart's own OpenTelemetry Collector (every daprd traced), metrics pushed every 5 s, and (with
    ``objects_endpoint``) moto's S3 in the cluster as the object store of exports and the archive."""
    repo, tag = image_ref.rsplit(":", 1)
    collector: dict[str, object] = {"enabled": collector_ref is not None}
    if collector_ref is not None:
        c_repo, c_tag = collector_ref.rsplit(":", 1)
        collector["image"] = {"repository": c_repo, "tag": c_tag, "pullPolicy": "IfNotPresent"}
    pw = secrets_["pg-password"]
    host = f"{POD_GATEWAY}:5432"
    fanout = int(os.environ.get("TASKFLOW_FANOUT_INTERVAL", "2"))
    reminder = int(os.environ.get("TASKFLOW_REMINDER_INTERVAL", "10"))
    values: dict[str, Any] = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
        "kafka": {"brokers": [kafka_node.POD_BOOTSTRAP], "strimzi": {"enabled": False}},
        "postgresql": {"enabled": False},
        "secrets": {
            "databaseUrl": f"postgresql+pg8000://{PG_ROLE}:{pw}@{host}/{PG_DATABASE}",
            "daprDatabaseUrl": f"postgres://{PG_ROLE}:{pw}@{host}/{PG_DATABASE}?sslmode=disable",
            "jwtSecret": secrets_["jwt-secret"],
            "webhookSigningKey": secrets_["webhook-signing-key"],
            "appApiToken": secrets_["app-api-token"],
        },
        "fanoutSchedule": f"@every {fanout}s",
        "reminderSchedule": f"@every {reminder}s",
        "networkPolicy": {"allowedNamespaces": ["knative-serving", "dapr-system", TRAEFIK_NAMESPACE]},
        # the dashboard, alerts and monitors too (prometheus-operator's CRDs are applied first)
        "monitoring": {"enabled": True, "collector": collector, "exportIntervalSeconds": 5},
        "dapr": {"tracingSamplingRate": "1"},
    }
    if objects_endpoint:
        # moto's Service by ClusterIP: the sidecars write there, and the presigned download URLs
        # the binding signs for that host also answer on the node (kube-proxy), where the tests run
        values["objectStore"] = {
            "bucket": OBJECTS_BUCKET,
            "region": "us-east-1",
            "endpoint": objects_endpoint,
            "forcePathStyle": True,
        }
        values["secrets"]["s3AccessKey"] = secrets_["s3-access-key"]
        values["secrets"]["s3SecretKey"] = secrets_["s3-secret-key"]
    return values


# ------------------------------------------------------------------------------ the cluster


def kubectl_cmd(*args: str) -> list[str]:
    return [str(BIN / "kubectl"), "--kubeconfig", str(ADMIN_KUBECONFIG), *args]


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    return _run(kubectl_cmd(*args), f"kubectl {' '.join(args[:3])}", input=input, check=check, timeout=timeout)


def namespace_manifest(name: str, enforce: str = "restricted") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": enforce,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/warn": enforce,
                    "pod-security.kubernetes.io/audit": enforce,
                },
            },
        }
    )


def smoke_pod_manifest(name: str = "smoke", namespace: str = NAMESPACE) -> str:
    """A pod that passes the `restricted` Pod Security Standard and runs the pause binary."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65535,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "pause",
                        "image": PAUSE_IMAGE,
                        "imagePullPolicy": "Never",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True,
                        },
                        "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}},
                    }
                ],
            },
        }
    )


@dataclass
class Cluster(procs.Lifecycle):
    """The node as a context manager: ``start()`` brings it up, ``stop()`` tears everything down."""

    port: int = field(default_factory=lambda: int(os.environ.get("PORT", "8080")))
    platform: bool = True  # images, CoreDNS, Knative Serving, Dapr, Traefik
    taskflow: bool = True
    run_bootstrap: bool = True
    startup_timeout: float = 180.0

    procs: dict[str, Proc] = field(default_factory=dict, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _forwarders: list[TcpForwarder] = field(default_factory=list, init=False)
    _started: bool = field(default=False, init=False)
    _kafka_started: bool = field(default=False, init=False)
    taskflow_image: str = field(default="", init=False)
    versions: dict[str, str] = field(default_factory=dict, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return ADMIN_KUBECONFIG

    @property
    def helm(self) -> Path:
        return bootstrap.HELM

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        return kubectl(*args, input=input, check=check, timeout=timeout)

    # ---- lifecycle (start(), the context manager: procs.Lifecycle)

    def _up(self, seconds: float) -> None:
        self.timings["cluster_up"] = seconds
        log(f"cluster up in {seconds:.1f}s")

    def check(self) -> list[str]:
        return [name for name, p in self.procs.items() if not p.alive()]

    def _dead(self) -> str | None:
        dead = self.check()
        if not dead:
            return None
        return "; ".join(f"{d} exited (rc={self.procs[d].popen.returncode}):\n{self.procs[d].tail(15)}" for d in dead)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        p = procs.spawn(name, cmd, {**os.environ, **(env or {})}, LOGS / f"{name}.log", cwd=STATE)
        self.procs[name] = p
        PIDS.write_text(json.dumps({n: q.popen.pid for n, q in self.procs.items()}))
        return p

    def _start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the cluster needs root (containerd, kubelet, iptables, mounts)")
        if self.run_bootstrap:
            bootstrap.bootstrap(list(bootstrap.CLUSTER_STEPS))
        ensure_packages()
        busy = [str(p) for p in (API_PORT, ETCD_PORT, ETCD_PEER_PORT, 10250, 10257, 10259) if procs.port_open(p)]
        if busy:
            raise ClusterError(f"ports in use: {', '.join(busy)} (is another cluster running? `cluster.py down`)")
        leftovers()
        for d in (STATE, LOGS, KUBELET_ROOT, CNI_CONF, CNI_IPAM, CONTAINERD_ROOT, RUN):
            d.mkdir(parents=True, exist_ok=True)
        setup_network()
        ensure_pki()
        write_kubeconfigs()
        t0 = time.monotonic()
        self._etcd()
        self._apiserver()
        self.timings["apiserver_ready"] = time.monotonic() - t0
        log(f"kube-apiserver ready after {self.timings['apiserver_ready']:.1f}s")
        self._controllers()
        self._containerd()
        self._kubelet()
        self.timings["node_ready"] = time.monotonic() - t0
        log(f"node {NODE_NAME} Ready after {self.timings['node_ready']:.1f}s")
        self._kube_proxy()
        kubectl("apply", "-f", "-", input=namespace_manifest(NAMESPACE))
        _wait(
            f"the {NAMESPACE} namespace's default ServiceAccount",
            lambda: bool(kubectl("get", "serviceaccount", "default", "-n", NAMESPACE, check=False, timeout=10)),
            60,
            self._dead,
        )
        if not self.platform:
            return
        self._images()
        self._coredns()
        self._platform()
        self._traefik()
        if self.taskflow:
            t1 = time.monotonic()
            self._taskflow()
            self.timings["taskflow_ready"] = time.monotonic() - t1
            log(f"TaskFlow Ready {self.timings['taskflow_ready']:.1f}s after the platform; API on {self.api_url}")

    # ---- platform

    def _images(self) -> None:
        import images  # tools/images.py (podman, debootstrap; stamps make a warm run skip every build)

        t0 = time.monotonic()
        try:
            built = images.build()
            images.import_into_containerd(str(CONTAINERD_SOCK), "k8s.io", sorted(built))
        except images.ImageError as e:
            raise ClusterError(f"images: {e}") from e
        self.timings["images"] = time.monotonic() - t0
        log(f"images: {len(built)} ready in containerd after {self.timings['images']:.1f}s")

    def _ref(self, prefix: str) -> str | None:
        refs = sorted(r for r in self.image_refs() if r.startswith(prefix))
        return refs[-1] if refs else None

    def _coredns(self) -> None:
        import images

        image = images.ref("coredns")
        self.versions["coredns"] = image.rsplit(":", 1)[1]
        kubectl("apply", "-f", "-", input=coredns_manifest(image))
        try:
            kubectl("rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s", timeout=130)
        except ClusterError as e:
            logs = kubectl("logs", "-n", "kube-system", "deployment/coredns", "--tail=30", check=False)
            raise ClusterError(f"{e}\nCoreDNS logs:\n{logs}") from e

    def _apply(self, manifest: str, what: str) -> None:
        """Server-side apply: CRDs first, Established, then the rest (which may hold their custom resources)."""
        import cluster_platform

        crds, rest = cluster_platform.split_crds(manifest)
        for part, text in (("CRDs", crds), ("resources", rest)):
            if text.strip() in ("", "---"):
                continue
            res = subprocess.run(
                kubectl_cmd("apply", "--server-side", "--force-conflicts", "-f", "-"),
                input=text,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if res.returncode != 0:
                raise ClusterError(f"applying {what} ({part}) failed:\n{res.stderr[-3000:]}")
            if part == "CRDs":
                kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", timeout=70)

    def _platform(self) -> None:
        import cluster_platform

        t0 = time.monotonic()
        knative = cluster_platform.render_knative_serving(
            config={"config-network": {"ingress-class": KNATIVE_INGRESS_CLASS}}
        )
        self.versions["knative-serving"] = _release_of(knative)
        self._apply(knative, "Knative Serving")
        self._apply(cluster_platform.render_dapr_control_plane(), "the Dapr control plane")
        self.versions["dapr"] = bootstrap.DAPR_VERSION
        for ns in ("knative-serving", "dapr-system"):
            kubectl(
                "wait", "--for=condition=Available", "deployment", "--all", "-n", ns, "--timeout=300s", timeout=310
            )  # fmt: skip
        self.timings["platform"] = time.monotonic() - t0
        log(f"Knative Serving and Dapr control plane Available after {self.timings['platform']:.1f}s")

    def _traefik(self) -> None:
        kubectl("apply", "-f", "-", input=traefik_manifest())
        token = kubectl("create", "token", "traefik", "-n", TRAEFIK_NAMESPACE, "--duration=48h").strip()
        cfg = STATE / "traefik.json"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(traefik_static_config(self.port, token))
        dynamic = STATE / "traefik-dynamic.json"
        dynamic.write_text(json.dumps({"http": {}}))
        self._spawn("traefik", [str(bootstrap.TRAEFIK), f"--configfile={cfg}"])
        _wait("Traefik", lambda: procs.port_open(self.port), 30, self._dead)

    def _ksvcs_ready(self) -> bool:
        """All of TaskFlow's Knative Services Ready; raises on a revision Knative has given up on."""
        items = json.loads(kubectl("get", "ksvc", "-n", NAMESPACE, "-o", "json", timeout=20))["items"]
        ready = 0
        for k in items:
            conds = {c["type"]: c for c in k.get("status", {}).get("conditions", [])}
            if conds.get("Ready", {}).get("status") == "True":
                ready += 1
            elif conds.get("ConfigurationsReady", {}).get("reason") == "RevisionFailed":
                name, msg = k["metadata"]["name"], conds["ConfigurationsReady"]["message"]
                raise GiveUp(f"Knative Service {name}: {msg}")
        return bool(items) and ready == len(items)

    def route_public_api(self) -> bool:
        """Send every request on 127.0.0.1:PORT to tasks-api, whatever its Host header (Traefik file provider).

        Knative's Ingress routes by host name (tasks-api.taskflow.<domain>); a user's client sends
        ``Host: 127.0.0.1:PORT``, so a catch-all router points at the Ingress's external route.
        """
        out = kubectl("get", "ingresses.networking.internal.knative.dev", "tasks-api", "-n", NAMESPACE, "-o", "json",
                      check=False, timeout=10)  # fmt: skip
        if not out:
            return False
        rules = json.loads(out)["spec"].get("rules", [])
        # an external rule when Knative has a domain configured; else the cluster-local one (the
        # default domain svc.cluster.local makes every route cluster-local)
        by_visibility = {r.get("visibility"): i for i, r in reversed(list(enumerate(rules)))}
        idx = by_visibility.get("ExternalIP", by_visibility.get("ClusterLocal"))
        if idx is None:
            return False
        service = f"{NAMESPACE}-tasks-api-rule-{idx}-path-0-wrr@knative"
        conf = {
            "http": {
                "routers": {
                    "taskflow-api": {
                        "entryPoints": ["web"],
                        "rule": "PathPrefix(`/`)",
                        "priority": 1,
                        "service": service,
                    }
                }
            }
        }
        path = STATE / "traefik-dynamic.json"
        text = json.dumps(conf, indent=2)
        if path.read_text() != text:
            path.write_text(text)
        return True

    def _taskflow_secrets(self) -> dict[str, str]:
        data: dict[str, str] = {}
        if SECRETS.exists():
            with contextlib.suppress(ValueError):
                data = json.loads(SECRETS.read_text())
        keys = ("pg-password", "jwt-secret", "webhook-signing-key", "app-api-token", "s3-access-key", "s3-secret-key")
        for key in keys:
            data.setdefault(key, secrets.token_urlsafe(32) if key != "pg-password" else secrets.token_hex(16))
        if os.environ.get("TASKFLOW_JWT_SECRET"):
            data["jwt-secret"] = os.environ["TASKFLOW_JWT_SECRET"]
        _write_private(SECRETS, json.dumps(data, indent=2))
        return data

    def _object_store(self) -> str:
        """moto in the cluster (the tests' S3) with the bucket created; its endpoint by ClusterIP."""
        import images

        t0 = time.monotonic()
        self._apply(moto_manifest(images.ref("moto")), "moto (S3 for exports and the audit archive)")
        available = "jsonpath={.status.conditions[?(@.type=='Available')].status}"
        _wait(
            "moto Available",
            lambda: "True" in kubectl("get", "deployment", "moto", "-n", NAMESPACE, "-o", available, check=False),
            120,
            self._dead,
        )
        ip = kubectl("get", "service", "moto", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}").strip()
        endpoint = f"http://{ip}:{MOTO_PORT}"

        def bucket() -> bool:  # moto checks no signature: a plain CreateBucket from the node
            request = urllib.request.Request(f"{endpoint}/{OBJECTS_BUCKET}", method="PUT")
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        _wait(f"bucket {OBJECTS_BUCKET} on {endpoint}", bucket, 60, self._dead)
        self.timings["object_store"] = time.monotonic() - t0
        log(f"moto in the cluster at {endpoint} (bucket {OBJECTS_BUCKET}) in {self.timings['object_store']:.1f}s")
        return endpoint

    def _taskflow(self) -> None:
        import images

        image = images.ref("taskflow")
        self.taskflow_image = image
        import stack  # the host PostgreSQL helpers

        data = self._taskflow_secrets()
        stack.ensure_database(PG_DATABASE, PG_ROLE, data["pg-password"], fresh=True)
        self._forwarders.append(TcpForwarder((POD_GATEWAY, stack.PG_PORT), ("127.0.0.1", stack.PG_PORT)))
        if not kafka_node.is_running() and not procs.port_open(kafka_node.PORT):
            self._kafka_started = True
        kafka_node.start()
        if not procs.port_open(kafka_node.POD_PORT):
            raise ClusterError(
                f"the Kafka broker on {kafka_node.BOOTSTRAP} has no pod listener on port {kafka_node.POD_PORT} "
                "(it was started by an older tools/kafka_node.py); stop it (python tools/kafka_node.py stop) and retry"
            )
        endpoint = self._object_store()
        self._monitoring_crds()
        values = taskflow_values(data, image, images.ref("otelcol"), endpoint)
        _write_private(VALUES, json.dumps(values, indent=2))
        t0 = time.monotonic()
        _run(
            [str(bootstrap.HELM), "upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE,
             "--kubeconfig", str(ADMIN_KUBECONFIG), "-f", str(VALUES), "--timeout", "10m"],
            "helm install taskflow", timeout=660,
        )  # fmt: skip
        self.timings["helm_install"] = time.monotonic() - t0
        _wait("every Knative Service Ready", self._ksvcs_ready, 600, self._dead)
        _wait("the tasks-api route in Traefik", self.route_public_api, 60, self._dead)
        _wait(f"{self.api_url}/healthz", lambda: procs.http_status(f"{self.api_url}/healthz", 10) == 200, 120)

    def _monitoring_crds(self) -> None:
        """prometheus-operator's CRDs (tools/crds.py's copies; no operator runs here), so the chart's
        monitoring.enabled objects are created for real and checked against their schemas."""
        import crds

        files = [
            crds.CRD_DIR / e["file"]
            for e in json.loads((crds.CRD_DIR / crds.MANIFEST_NAME).read_text())["crds"]
            if e["file"].startswith("prometheus-")
        ]
        for f in files:
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        if files:
            kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    def _etcd(self) -> None:
        if ETCD_DATA.exists():
            shutil.rmtree(ETCD_DATA)  # an empty cluster every run
        url = f"http://127.0.0.1:{ETCD_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        self._spawn(
            "etcd",
            [
                "etcd", "--name", NODE_NAME, "--data-dir", str(ETCD_DATA),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{NODE_NAME}={peer}", "--initial-cluster-state", "new",
                "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn",
            ],
        )  # fmt: skip
        _wait("etcd", lambda: procs.http_status(f"{url}/health") == 200, 30, self._dead)

    def _apiserver(self) -> None:
        self._spawn(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
                "--bind-address=0.0.0.0",
                f"--secure-port={API_PORT}",
                f"--advertise-address={NODE_IP}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={PKI / 'ca.crt'}",
                f"--tls-cert-file={PKI / 'apiserver.crt'}",
                f"--tls-private-key-file={PKI / 'apiserver.key'}",
                f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
                f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                f"--service-account-key-file={PKI / 'sa.pub'}",
                f"--service-account-signing-key-file={PKI / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default; namespaces opt in with their labels
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--v=1",
            ],
        )

        def ready() -> bool:
            res = subprocess.run(kubectl_cmd("get", "--raw", "/readyz"), capture_output=True, text=True, timeout=10)
            return res.returncode == 0 and res.stdout.strip() == "ok"

        _wait("kube-apiserver /readyz", ready, 90, self._dead)

    def _controllers(self) -> None:
        cm = kubeconfig_path("controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                f"--kubeconfig={cm}",
                f"--authentication-kubeconfig={cm}",
                f"--authorization-kubeconfig={cm}",
                "--bind-address=127.0.0.1",
                f"--service-account-private-key-file={PKI / 'sa.key'}",
                f"--root-ca-file={PKI / 'ca.crt'}",
                f"--cluster-signing-cert-file={PKI / 'ca.crt'}",
                f"--cluster-signing-key-file={PKI / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,bootstrapsigner,tokencleaner",
                "--v=1",
            ],
        )
        sch = kubeconfig_path("scheduler")
        self._spawn(
            "kube-scheduler",
            [
                str(BIN / "kube-scheduler"),
                f"--kubeconfig={sch}",
                f"--authentication-kubeconfig={sch}",
                f"--authorization-kubeconfig={sch}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _containerd(self) -> None:
        cfg = STATE / "containerd.toml"
        cfg.write_text(containerd_config())
        (CNI_CONF / "10-taskflow.conflist").write_text(json.dumps(cni_config(), indent=2) + "\n")
        if CNI_IPAM.exists():  # leases of pods from an earlier run
            shutil.rmtree(CNI_IPAM)
        self._spawn("containerd", ["containerd", "--config", str(cfg)])

        def up() -> bool:
            return subprocess.run(self.ctr("version"), capture_output=True, timeout=5).returncode == 0

        _wait("containerd", up, 30, self._dead)
        self.import_images([pause_archive()])

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(CONTAINERD_SOCK), "--namespace", "k8s.io", *args]

    def image_refs(self) -> set[str]:
        out = _run(self.ctr("images", "ls", "-q"), "ctr images ls")
        return set(out.split())

    def import_images(self, archives: list[Path]) -> None:
        for a in archives:
            t0 = time.monotonic()
            _run(self.ctr("images", "import", str(a)), f"importing {a.name}", timeout=600)
            log(f"imported {a.name} in {time.monotonic() - t0:.1f}s")

    def _kubelet(self) -> None:
        cfg = STATE / "kubelet.json"
        cfg.write_text(json.dumps(kubelet_config(), indent=2) + "\n")
        self._spawn(
            "kubelet",
            [
                str(BIN / "kubelet"),
                f"--config={cfg}",
                f"--kubeconfig={kubeconfig_path('kubelet')}",
                f"--root-dir={KUBELET_ROOT}",
                f"--cert-dir={KUBELET_ROOT / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

        def ready() -> bool:
            out = kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=10)
            if not out:
                return False
            conds = json.loads(out)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        _wait(f"node {NODE_NAME} Ready", ready, self.startup_timeout, self._dead)

    def _kube_proxy(self) -> None:
        cfg = STATE / "kube-proxy.json"
        cfg.write_text(json.dumps(kube_proxy_config(), indent=2) + "\n")
        self._spawn("kube-proxy", [str(BIN / "kube-proxy"), f"--config={cfg}", "--v=1"])
        _wait(
            "kube-proxy healthz",
            lambda: procs.http_status("http://127.0.0.1:10256/healthz") == 200,
            60,
            self._dead,
        )

    def run_smoke_pod(self, timeout: float = 120) -> float:
        """Create a restricted pause pod in the TaskFlow namespace; seconds until it is Ready."""
        kubectl("delete", "pod", "smoke", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        t0 = time.monotonic()
        kubectl("apply", "-f", "-", input=smoke_pod_manifest())
        kubectl("wait", "-n", NAMESPACE, "pod/smoke", "--for=condition=Ready", f"--timeout={int(timeout)}s",
                timeout=timeout + 10)  # fmt: skip
        return time.monotonic() - t0

    def stop(self) -> None:
        t0 = time.monotonic()
        for f in self._forwarders:
            f.close()
        self._forwarders.clear()
        if self._kafka_started:
            kafka_node.stop()
            self._kafka_started = False
        if not self.procs:
            teardown_network()
            return
        log("tearing down")
        self._stop_procs("traefik", "port-forward")
        apiserver_up = "kube-apiserver" in self.procs and self.procs["kube-apiserver"].alive()
        kubelet_up = "kubelet" in self.procs and self.procs["kubelet"].alive()
        # no controller may recreate what we delete, then the kubelet stops every pod (CNI DEL: veths,
        # network namespaces, the CNI bridge plugin's iptables rules) before it goes itself
        self._stop_procs("kube-controller-manager", "kube-scheduler")
        if apiserver_up and kubelet_up:
            kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false",
                    check=False, timeout=30)  # fmt: skip
            with contextlib.suppress(ClusterError):
                _wait("pods deleted", lambda: not kubectl("get", "pods", "-A", "-o", "name", timeout=10).strip(), 60)
        self._stop_procs("kube-proxy", "kubelet")
        if "containerd" in self.procs and self.procs["containerd"].alive():
            self._remove_containers()
        self._stop_procs("containerd")
        self._kill_shims()
        # etcd starts empty next time: the API server need not drain its watches
        self._stop_procs("kube-apiserver", timeout=3)
        self._stop_procs(*list(self.procs))
        self.procs.clear()
        PIDS.unlink(missing_ok=True)
        subprocess.run([str(BIN / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
        cleanup_iptables()
        unmount_all(KUBELET_ROOT, RUN, CONTAINERD_ROOT)
        teardown_network()
        log(f"torn down in {time.monotonic() - t0:.1f}s")
        self._started = False

    def _stop_procs(self, *names: str, timeout: float = 20) -> None:
        ps = [self.procs[n] for n in names if n in self.procs]
        procs.stop(ps, timeout=timeout, log=log)
        for n in names:
            self.procs.pop(n, None)

    def _remove_containers(self) -> None:
        """Kill and delete every task and container containerd still has (a kubelet that died early)."""
        for cmd in (("tasks", "ls", "-q"), ("containers", "ls", "-q")):
            ids = subprocess.run(self.ctr(*cmd), capture_output=True, text=True, timeout=30).stdout.split()
            for cid in ids:
                if cmd[0] == "tasks":
                    subprocess.run(self.ctr("tasks", "kill", "-s", "SIGKILL", cid), capture_output=True, timeout=10)
                    subprocess.run(self.ctr("tasks", "delete", "-f", cid), capture_output=True, timeout=20)
                else:
                    subprocess.run(self.ctr("containers", "delete", cid), capture_output=True, timeout=20)

    def _kill_shims(self) -> None:
        for pid in _pids_with_arg(str(CONTAINERD_SOCK)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _release_of(manifest: str) -> str:
    m = re.search(r"Knative Serving (\S+) \(", manifest) or re.search(
        r'serving\.knative\.dev/release: "?([^"\s]+)', manifest
    )
    return m.group(1) if m else "?"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _pids_with_arg(arg: str) -> list[int]:
    """Processes whose command line contains ``arg`` (our containerd's shims name its socket)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmdline:
            out.append(int(d.name))
    return out


def leftovers() -> None:
    """Stop processes, shims and mounts a killed run left (by the pid file and our socket path only)."""
    try:
        pids = json.loads(PIDS.read_text())
    except (OSError, ValueError):
        pids = {}
    for name, pid in pids.items():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if Path(exe).name in (name, "etcd", "containerd") or str(BIN) in exe:
            log(f"stopping {name} (pid {pid}) left by an earlier run")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    PIDS.unlink(missing_ok=True)
    for pid in _pids_with_arg(str(CONTAINERD_SOCK)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    n = unmount_all(KUBELET_ROOT, RUN, CONTAINERD_ROOT)
    if n:
        log(f"unmounted {n} mounts left by an earlier run")


def down() -> None:
    leftovers()
    if (BIN / "kube-proxy").exists():
        subprocess.run([str(BIN / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
    cleanup_iptables()
    teardown_network()


# ------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the cluster up in the foreground; Ctrl-C tears it down")
    up.add_argument("--no-taskflow", action="store_true", help="do not install TaskFlow (node and platform only)")
    up.add_argument("--node-only", action="store_true", help="only the node: no images, CoreDNS, Knative, Dapr")
    up.add_argument("--no-bootstrap", action="store_true", help="skip tools/bootstrap.py")
    up.add_argument("--smoke", action="store_true", help="run a restricted pause pod and exit")
    sub.add_parser("down", help="clean up what a killed run left behind")
    kc = sub.add_parser("kubectl", help="kubectl with the cluster's admin kubeconfig")
    kc.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)

    if args.cmd == "kubectl":
        return subprocess.run(kubectl_cmd(*args.args)).returncode
    if args.cmd == "down":
        down()
        return 0

    cluster = Cluster(
        platform=not args.node_only,
        taskflow=not (args.no_taskflow or args.node_only),
        run_bootstrap=not args.no_bootstrap,
    )

    def smoke() -> int | None:
        if not args.smoke:
            return None
        log(f"smoke pod Ready after {cluster.run_smoke_pod():.1f}s")
        return 0

    return procs.foreground(
        cluster,
        "cluster",
        (ClusterError, bootstrap.BootstrapError, kafka_node.KafkaError),
        cluster.check,
        f"running; kubeconfig {ADMIN_KUBECONFIG}; Ctrl-C to stop",
        LOGS,
        log,
        after_start=smoke,
    )


if __name__ == "__main__":
    sys.exit(main())
