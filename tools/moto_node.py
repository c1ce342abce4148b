#!/usr/bin/env python3
"""The local stack's object storage and cloud secret store: moto's server (PyPI ``moto[server]``), a
real HTTP implementation of the S3 and Secrets Manager APIs, on loopback.

    python tools/moto_node.py run [--port 5000]      # foreground, bucket and secrets created

The stack (tools/stack.py) starts it as one more supervised process and creates the bucket the
``bindings.aws.s3`` component writes to. ``prepare`` also stores the S3 keys in moto's Secrets
Manager, and with ``up --secret-store aws`` every secret of the stack, one secret per key, which
daprd then reads through ``secretstores.aws.secretmanager`` (registered by our daprd build,
tools/daprd/cmd/daprd). moto keeps everything in memory: ``prepare`` runs again after every
(re)start.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import procs  # noqa: E402

REPO = TOOLS.parent
DEFAULT_PORT = int(os.environ.get("TASKFLOW_MOTO_PORT", "5000"))
REGION = "us-east-1"
BUCKET = "taskflow-objects"


@dataclass(frozen=True)
class Credentials:
    """The stack's AWS credentials: random per run (moto accepts any; nothing real to leak)."""

    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))

    def env(self) -> dict[str, str]:
        """The AWS SDK's default chain reads these (a daprd with the Secrets Manager component)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": REGION}


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _moto_server() -> str:
    for cand in (REPO / ".venv" / "bin" / "moto_server", Path(sys.executable).parent / "moto_server"):
        if cand.exists():
            return str(cand)
    raise RuntimeError("moto_server not found: install the project's dev extra (moto[server])")


def spawn(port: int, logfile: Path) -> procs.Proc:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MOTO_PORT": str(port)}
    return procs.spawn("moto", [_moto_server(), "-H", "127.0.0.1", "-p", str(port)], env, logfile, cwd=REPO)


def client(service: str, port: int, creds: Credentials) -> object:
    """An independent boto3 client on moto (what the tests check objects and secrets with)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint(port),
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
    )


def wait_ready(port: int, proc: procs.Proc | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"moto_server exited:\n{proc.tail()}")
        if procs.port_open(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on port {port} within {timeout:.0f}s")


def prepare(port: int, creds: Credentials, secrets_: dict[str, str] | None = None, bucket: str = BUCKET) -> None:
    """Create the bucket and put the S3 credentials and ``secrets_`` into Secrets Manager, one secret
    per key (idempotent)."""
    s3 = client("s3", port, creds)
    try:
        s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except Exception as exc:
        if "BucketAlreadyOwnedByYou" not in str(exc):
            raise
    sm = client("secretsmanager", port, creds)
    values = {**(secrets_ or {}), "s3-access-key": creds.access_key, "s3-secret-key": creds.secret_key}
    for name, value in values.items():
        try:
            sm.create_secret(Name=name, SecretString=value)  # type: ignore[attr-defined]
        except Exception as exc:
            if "ResourceExistsException" not in str(exc):
                raise
            sm.put_secret_value(SecretId=name, SecretString=value)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="moto_server in the foreground, bucket and secrets created")
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    creds = Credentials.generate()
    proc = spawn(args.port, REPO / ".cache" / "run" / "logs" / "moto.log")
    try:
        wait_ready(args.port, proc)
        prepare(args.port, creds)
        print(f"moto on {endpoint(args.port)}: bucket {BUCKET}, region {REGION}", flush=True)
        proc.popen.wait()
    except KeyboardInterrupt:
        pass
    finally:
        procs.stop([proc], timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
