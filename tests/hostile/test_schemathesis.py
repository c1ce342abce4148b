"""schemathesis against /v1/openapi.json of the running embedded app (a real server on a real port,
its own SQLite file): every operation, the stateful phase following the document's links from
POST /v1/tasks, signed in and not. Zero 5xx and zero answers that break the document.

``positive_data_acceptance`` is left out on purpose: the document cannot say everything the API
checks (If-Match must match the current ETag, an RRULE grammar, recurrence needs due_at, the
webhook URL policy, an opaque cursor), so a schema-valid request may rightly get 412 or 422.
Every other check of schemathesis runs. Budget: TASKFLOW_SCHEMATHESIS_EXAMPLES per operation
(default 20) and TASKFLOW_SCHEMATHESIS_SEED (fixed by default, so CI is repeatable)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.blackbox import free_port

EXAMPLES = os.environ.get("TASKFLOW_SCHEMATHESIS_EXAMPLES", "20")
SEED = os.environ.get("TASKFLOW_SCHEMATHESIS_SEED", "20261202")
CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]
#: The token comes from the environment (never on a command line or in output). A request that
#: breaks the schema may also be refused as too large (413) or with too long a URI (414: the
#: query-string limit, or the HTTP server's request-line limit).
CONFIG = """
{headers}
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`taskflow dev` as a user runs it, on TASKFLOW_HOSTILE_PORT or a free port; its log on failure."""
    workdir = tmp_path_factory.mktemp("embedded")
    port = int(os.environ.get("TASKFLOW_HOSTILE_PORT") or free_port())
    secret = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "DAPR_", "APP_API_TOKEN"))}
    env.update(
        TASKFLOW_JWT_SECRET=secret,
        TASKFLOW_DATABASE_URL=f"sqlite:///{workdir / 'taskflow.db'}",
        TASKFLOW_METRICS_PORT="0",
        TASKFLOW_LOG_LEVEL="WARNING",
    )
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskflow.cli", "dev", "--port", str(port)], cwd=workdir, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (workdir / "server.log").read_text()[-3000:]
            time.sleep(0.2)
        token = subprocess.run(
            [sys.executable, "-m", "taskflow.cli", "token", "schemathesis", "--ttl", "3600"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield {"base": base, "workdir": str(workdir), "token": token, "log": str(workdir / "server.log")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _schemathesis(server: dict[str, str], *, signed_in: bool, examples: str = EXAMPLES) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    workdir = Path(server["workdir"])
    config = workdir / ("signed-in.toml" if signed_in else "signed-out.toml")
    headers = 'headers = { Authorization = "Bearer ${TASKFLOW_SCHEMATHESIS_TOKEN}" }' if signed_in else ""
    config.write_text(CONFIG.format(headers=headers))
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "TASKFLOW_SCHEMATHESIS_TOKEN": server["token"],
        "SCHEMATHESIS_HOOKS": "tests.hostile.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        exe,
        "--config-file",
        str(config),
        "run",
        server["base"] + "/v1/openapi.json",
        *CHECKS,
        "--max-examples",
        examples,
        "--seed",
        SEED,
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
        "--warnings",
        "off",
    ]
    # Run in the server's folder: schemathesis keeps a .schemathesis/ cache in its working directory.
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir, env=env)
    (workdir / "schemathesis.log").write_text(result.stdout + result.stderr)
    # Long generated URLs and bodies make lines of kilobytes: keep each line short in the report.
    summary = "\n".join(line[:300] for line in result.stdout.splitlines()[-150:])
    assert result.returncode == 0, summary + "\n--- server log ---\n" + Path(server["log"]).read_text()[-3000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated.group(1)) > 0, summary


def test_signed_in_every_operation_conforms_and_never_fails(server: dict[str, str]) -> None:
    _schemathesis(server, signed_in=True)


def test_signed_out_every_operation_conforms_and_never_fails(server: dict[str, str]) -> None:
    """Without a token every protected operation must be refused (schemathesis' ignored_auth check)
    with the documented 401 problem; a few examples per operation are enough for that."""
    _schemathesis(server, signed_in=False, examples="5")
