"""The container image, as far as it can be tested without a Docker engine: the entrypoint's
command line, the Dockerfile's promises, and that the locked dependency set installs into a clean
venv where every function imports.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest

from taskflow.functions import FUNCTIONS

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
LOCK = REPO / "docker" / "requirements.lock"
DOCKERFILE = REPO / "Dockerfile"
TARGETS = tuple(f.folder for f in FUNCTIONS)

pytestmark = pytest.mark.helm


@pytest.fixture()
def fake_ff(tmp_path: Path) -> dict[str, str]:
    """A PATH whose `functions-framework` prints its argv, and a functions dir with every target."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ff = bindir / "functions-framework"
    ff.write_text('#!/bin/sh\necho "functions-framework $*"\n')
    ff.chmod(0o755)
    fdir = tmp_path / "functions"
    for target in TARGETS:
        (fdir / target).mkdir(parents=True)
        (fdir / target / "main.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "FUNCTION_TARGET"}}
    return {**env, "PATH": f"{bindir}:{env.get('PATH', '')}", "TASKFLOW_FUNCTIONS_DIR": str(fdir)}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("target", TARGETS)
def test_entrypoint_starts_the_selected_function(fake_ff: dict[str, str], target: str) -> None:
    res = _run({**fake_ff, "FUNCTION_TARGET": target})
    assert res.returncode == 0, res.stderr
    source = f"{fake_ff['TASKFLOW_FUNCTIONS_DIR']}/{target}/main.py"
    assert res.stdout.strip() == f"functions-framework --source {source} --target {target} --port 8080"


def test_entrypoint_honours_port(fake_ff: dict[str, str]) -> None:
    res = _run({**fake_ff, "FUNCTION_TARGET": "audit", "PORT": "9000"})
    assert res.stdout.strip().endswith("--port 9000")


@pytest.mark.parametrize("bad", ["", "../etc", "tasks-api", "nope"])
def test_entrypoint_refuses_a_bad_target(fake_ff: dict[str, str], bad: str) -> None:
    res = _run({**fake_ff, "FUNCTION_TARGET": bad})
    assert res.returncode != 0
    assert "functions-framework" not in res.stdout


def test_entrypoint_runs_a_given_command(fake_ff: dict[str, str]) -> None:
    """The migration Job passes `python -m taskflow.cli migrate` as arguments."""
    res = _run(fake_ff, "echo", "migrate")
    assert (res.returncode, res.stdout.strip()) == (0, "migrate")


def _stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


def test_dockerfile_is_multistage_nonroot_and_precompiled() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    final = stages[-1]
    assert "USER 10001" in final
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    assert 'ENTRYPOINT ["/app/entrypoint.sh"]' in final
    assert "pip install" not in final and "apt-get" not in final
    assert "compileall" in text and "requirements.lock" in text


def test_lock_pins_every_runtime_dependency() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0]).lower()
        assert name in pins, f"{name} (pyproject dependency) is not in docker/requirements.lock"
    assert not {"pytest", "mypy", "ruff", "nox"} & set(pins), "dev tools do not belong in the image"


@pytest.mark.skipif(bool(os.environ.get("TASKFLOW_OFFLINE")), reason="TASKFLOW_OFFLINE: no package index")
def test_lock_installs_into_a_clean_venv_and_every_function_imports(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    for args in (["-r", str(LOCK)], [str(REPO)]):
        res = subprocess.run([*pip, *args], capture_output=True, text=True, check=False, timeout=900)
        assert res.returncode == 0, res.stdout + res.stderr
    present = [t for t in TARGETS if (REPO / "functions" / t / "main.py").is_file()]
    if not present:
        pytest.skip("no functions/<name>/main.py yet")
    probe = (
        "import importlib.util, sys\n"
        "for target in sys.argv[1:]:\n"
        "    path = f'functions/{target}/main.py'\n"
        "    spec = importlib.util.spec_from_file_location(f'fn_{target}', path)\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    assert callable(getattr(mod, target)), f'{path} has no function {target}'\n"
        "    print('ok', target)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "PYTHON"))}
    # Outside the repo's own venv and sources: only what the clean venv holds may be imported.
    res = subprocess.run(
        [str(py), "-I", "-c", probe, *present], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [w for t in present for w in ("ok", t)]
