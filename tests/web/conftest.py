"""The web app in Debian's Chromium, driven by Playwright, against a running embedded TaskFlow
(its own port and SQLite file). axe-core is injected into every page (as an init script, which a
page's Content-Security-Policy does not block) and checked on each screen."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TASKFLOW_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = ROOT / "docs" / "screens"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port(preferred: int = 28080) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


@contextmanager
def taskflow_dev(workdir: Path, port: int, **env: str) -> Iterator[str]:
    """`taskflow dev` (embedded mode) on ``port`` with its own SQLite file, serving web/dist."""
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        pytest.fail("web/dist is not built: run `python tools/build_web.py` (nox -s web does)")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "APP_API_TOKEN", "DAPR_"))} | {
        "TASKFLOW_DATABASE_URL": f"sqlite:///{workdir / 'web.db'}",
        "TASKFLOW_WEB_DIR": str(ROOT / "web" / "dist"),
        "TASKFLOW_METRICS_PORT": "0",
        "TASKFLOW_REMINDER_INTERVAL": "1",
        "TASKFLOW_FANOUT_INTERVAL": "1",
        "TASKFLOW_LOG_LEVEL": "WARNING",
        **env,
    }
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskflow.cli", "dev", "--port", str(port)],
        cwd=workdir,  # the generated dev secret goes to ./var/, away from the checkout
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"taskflow dev did not start; see {workdir / 'server.log'}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app as `nox -s dev` runs it: generated development secret, so "User name" sign-in works."""
    with taskflow_dev(tmp_path_factory.mktemp("taskflow-web"), free_port(), TASKFLOW_DEV="1") as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Api:
    """The REST API as one user (for arranging data and checking what the browser wrote)."""

    def __init__(self, base: str, user: str) -> None:
        token = httpx.post(f"{base}/v1/auth/dev-token", json={"user": user}).json()["access_token"]
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def create(self, **fields: Any) -> dict[str, Any]:
        resp = self.http.post("/v1/tasks", json={"title": "task", **fields})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def tasks(self, query: str = "status=all") -> list[dict[str, Any]]:
        return list(self.http.get(f"/v1/tasks?{query}").json()["items"])


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api(server: str, user: str) -> Api:
    return Api(server, user)


def new_context(browser: Any, server: str, **options: Any) -> Any:
    ctx = browser.new_context(base_url=server, **options)
    ctx.add_init_script(path=str(AXE))
    return ctx


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    ctx = new_context(browser, server, viewport={"width": 1280, "height": 860})
    yield from open_page(ctx)


@pytest.fixture
def phone(browser: Any, server: str) -> Iterator[Any]:
    ctx = new_context(
        browser, server, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield from open_page(ctx)


def open_page(ctx: Any) -> Iterator[Any]:
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(10_000)
    yield pg
    ctx.close()
    # No script error and no Content-Security-Policy violation (Chromium logs both as console errors);
    # failed requests the tests provoke on purpose (4xx answers) are logged too and are expected.
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    assert unexpected == [], unexpected


def sign_in(page: Any, user: str, path: str = "/") -> None:
    page.goto(path)
    page.get_by_label("User name").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Search tasks").wait_for()


def check_axe(page: Any) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], bad


def screenshot(page: Any, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"))
