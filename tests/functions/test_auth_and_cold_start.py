"""Token verification against a JWKS endpoint and claim checks; functions do no I/O at import."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import serve_jwks

ROOT = Path(__file__).resolve().parents[2]
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_url() -> Iterator[str]:
    with serve_jwks(KEY.public_key()) as url:
        yield url


def _rs256(claims: dict[str, Any], kid: str = "k1") -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 300, **claims}, KEY, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_jwks_tokens_with_issuer_and_audience(make_app: Any, jwks_url: str) -> None:
    app = make_app(jwks_url=jwks_url, jwt_issuer="https://auth.example", jwt_audience="taskflow")
    client = app.apps["tasks-api"].test_client()
    good = _rs256({"sub": "alice", "iss": "https://auth.example", "aud": "taskflow"})
    assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    for bad in (
        _rs256({"sub": "alice", "iss": "https://evil.example", "aud": "taskflow"}),
        _rs256({"sub": "alice", "iss": "https://auth.example", "aud": "other"}),
        _rs256({"sub": "alice", "iss": "https://auth.example", "aud": "taskflow"}, kid="unknown"),
        # an HS256 token signed with the public key must not pass (algorithm confusion)
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256"),
    ):
        assert client.get("/v1/tasks", headers={"Authorization": f"Bearer {bad}"}).status_code == 401


def test_importing_every_function_performs_no_io() -> None:
    """Cold start: building the seven apps opens no database connection and no sidecar client."""
    code = """
import functions_framework, sys
from taskflow import bootstrap
from taskflow.functions import FUNCTIONS
for fn in FUNCTIONS:
    functions_framework.create_app(target=fn.folder, source=f"functions/{fn.folder}/main.py")
assert bootstrap._root is None  # nothing built: no engine, no sidecar client
heavy_modules = ("sqlalchemy.dialects.postgresql", "pg8000", "httpx", "dapr", "grpc", "alembic", "opentelemetry")
for heavy in heavy_modules:  # OpenTelemetry too: set up at the first request
    assert heavy not in sys.modules, heavy
print("ok")
"""
    env = {"TASKFLOW_MODE": "dapr", "DAPR_HTTP_PORT": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_health_checks_reach_neither_the_database_nor_the_sidecar() -> None:
    """Dapr mode with no sidecar yet and no database secret: every /healthz still answers at once."""
    code = """
import functions_framework
from taskflow import bootstrap
from taskflow.functions import FUNCTIONS
for fn in FUNCTIONS:
    app = functions_framework.create_app(target=fn.folder, source=f"functions/{fn.folder}/main.py")
    assert app.test_client().get("/healthz").status_code == 200, fn.folder
built = set(bootstrap.root()._built)
assert not built & {"sidecar", "secrets", "engine", "database_url"}, built
print("ok")
"""
    env = {"TASKFLOW_MODE": "dapr", "DAPR_HTTP_PORT": "1", "DAPR_HEALTH_TIMEOUT": "60", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
