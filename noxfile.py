"""Developer and CI entry points. `nox -l` lists them; CI runs the default sessions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "web", "helm", "e2e"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed (.ci/run installs it): faster venvs

ROOT = Path(__file__).parent
PYTHON = "3.11"
IMAGE_LOCK = ROOT / "docker" / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"


def _install(session: nox.Session, extras: str = "dev") -> None:
    """Install the project at the locked versions once per venv; skip when neither pyproject.toml nor
    the lock changed (warm start)."""
    inputs = (ROOT / "pyproject.toml").read_bytes() + DEV_LOCK.read_bytes() + extras.encode()
    digest = hashlib.sha256(inputs).hexdigest()
    stamp = Path(session.virtualenv.location) / ".taskflow-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    session.install("-q", "-c", str(DEV_LOCK), "-e", f".[{extras}]" if extras else ".")
    stamp.write_text(digest)


def _pytest(session: nox.Session, *args: str) -> None:
    """pytest with the project's flags; extra arguments after `--` pass through."""
    session.run("pytest", "-q", "--strict-markers", "-p", "no:cacheprovider", *args, *session.posargs)


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """Run TaskFlow in embedded mode (SQLite, in-process events): the web app and API on http://127.0.0.1:8080."""
    _install(session, "")
    session.run("python", "tools/build_web.py")
    session.run("taskflow", "dev", env={"TASKFLOW_DEV": "1"})


@nox.session(python=PYTHON)
def stack(session: nox.Session) -> None:
    """Run the local stack: PostgreSQL, Kafka and one daprd per function (tasks-api serves the web app too)."""
    _install(session)
    session.run("python", "tools/build_web.py")
    session.run("python", "tools/stack.py", "up", *session.posargs)


@nox.session(python=PYTHON)
def cluster(session: nox.Session) -> None:
    """Run TaskFlow on a single-node Kubernetes built here (foreground; needs root); see docs/local-cluster.md."""
    _install(session)
    session.run("python", "tools/cluster.py", "up", *session.posargs)


@nox.session(python=PYTHON, name="cluster-tests")
def cluster_tests(session: nox.Session) -> None:
    """Tests against the local Kubernetes cluster (tests/cluster; needs root, builds Kubernetes when cold)."""
    _install(session)
    session.run("python", "tools/bootstrap.py", "helm", "kafka", "kubernetes", "pause")
    _pytest(session, "-m", "cluster", "tests/cluster")


@nox.session(python=PYTHON)
def bootstrap(session: nox.Session) -> None:
    """Fetch and build daprd, Kafka and helm into .cache/."""
    session.run("python", "tools/bootstrap.py", *session.posargs, external=True)


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """Re-resolve the locks with uv: docker/requirements.lock (the image) and requirements-dev.lock (every session)."""
    compile_ = ["uv", "pip", "compile", "pyproject.toml", "--python-version", PYTHON, "--no-annotate", "--quiet"]
    image, dev = (str(p.relative_to(ROOT)) for p in (IMAGE_LOCK, DEV_LOCK))
    session.run(*compile_, "-o", image, *session.posargs, external=True)
    session.run(*compile_, "--all-extras", "-c", image, "-o", dev, *session.posargs, external=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    _install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the taskflow library."""
    _install(session)
    session.run("mypy", "shared/taskflow")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, function, integration and hostile-input tests (PostgreSQL too when TASKFLOW_TEST_PG_URL is set)."""
    _install(session)
    if not os.environ.get("TASKFLOW_TEST_PG_URL"):
        session.warn("TASKFLOW_TEST_PG_URL is not set: PostgreSQL variants are skipped")
    _pytest(session, "tests/unit", "tests/functions", "tests/integration", "tests/hostile")


@nox.session(python=PYTHON)
def web(session: nox.Session) -> None:
    """The web app in real Chromium (Playwright, axe-core) against embedded mode; screenshots to docs/screens/."""
    _install(session, "dev,web")
    session.run("python", "tools/build_web.py")
    _pytest(session, "-m", "web", "tests/web")


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """End-to-end tests through the local stack (real daprd, Kafka, PostgreSQL)."""
    _install(session)
    session.run("python", "tools/build_web.py")  # tasks-api serves the web app in the stack too
    session.run("python", "tools/bootstrap.py")
    _pytest(session, "-m", "e2e", "tests/e2e")


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The local stack under load while seeded faults hit it (kill -9, PostgreSQL restarts, SIGSTOP), then
    the invariants; `-- --minutes 1 --seed 7` is CI's run. Needs root (its own PostgreSQL cluster)."""
    _install(session)
    session.run("python", "tools/build_web.py")
    session.run("python", "tools/bootstrap.py", "daprd", "kafka", "otelcol")
    session.run("python", "tools/chaos.py", "--no-bootstrap", *session.posargs)


@nox.session(python=PYTHON)
def helm(session: nox.Session) -> None:
    """Lint, render and validate the Helm chart offline (every values file and mode) against upstream CRDs;
    the cluster's platform manifests; TaskFlow's image built and run with podman (as root); the
    monitoring alerts unit-tested with promtool."""
    _install(session)
    session.run("python", "tools/bootstrap.py", "helm", "crds", "promtool", "otelcol")
    _pytest(session, "-rs", "-m", "helm or images", "tests/deploy")  # -rs: say why a check was skipped


@nox.session(python=PYTHON)
def manifests(session: nox.Session) -> None:
    """Re-render knative/ from the chart."""
    _install(session)
    session.run("python", "tools/bootstrap.py", "helm", "crds")
    session.run("python", "tools/render_manifests.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (see bench/README.md); pass a script name after `--`."""
    _install(session, "dev,web")
    session.run("python", *(session.posargs or ["bench/api_bench.py"]))
