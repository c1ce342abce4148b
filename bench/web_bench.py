"""The web app's first load in Debian's Chromium: bytes transferred (gzip) and time to interactive.

Starts embedded TaskFlow (`taskflow dev`, its own SQLite file, port 28090) serving web/dist, then
loads the app RUNS times in a fresh browser context each (empty cache):

- sign-in screen: navigation start until the "User name" form is on screen and takes input;
- task list: a signed-in tab (token in sessionStorage) with 50 tasks, until the first page of 30 is
  drawn (the app has fetched /v1/tasks) and every control answers.

Time to interactive is the ``taskflow:interactive`` performance mark the app sets at those two
moments (milliseconds after navigation start, on the main thread, so after any long task).

Transferred bytes are Chromium's own count (Performance Resource Timing ``transferSize``: headers +
gzip bodies) for the page, its assets and the API calls of that load.

    nox -s bench -- bench/web_bench.py        (after python tools/build_web.py)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("TASKFLOW_BENCH_WEB_PORT", "28090"))
RUNS = int(os.environ.get("RUNS", "15"))
BASE = f"http://127.0.0.1:{PORT}"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARGS += ["--disable-component-update", "--disable-sync"]

TRANSFERRED = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  return {
    total: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
    files: [[nav.name, nav.transferSize], ...res.map(r => [r.name.replace(location.origin, ''), r.transferSize])],
  };
}"""


def start(workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")} | {
        "TASKFLOW_DEV": "1",
        "TASKFLOW_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "TASKFLOW_WEB_DIR": str(ROOT / "web" / "dist"),
        "TASKFLOW_METRICS_PORT": "0",
        "TASKFLOW_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskflow.cli", "dev", "--port", str(PORT)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if httpx.get(f"{BASE}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("taskflow dev did not start")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min": round(ordered[0], 1),
    }


def main() -> None:
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        raise SystemExit("build the app first: python tools/build_web.py")
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(Path(tmp))
        try:
            token = httpx.post(f"{BASE}/v1/auth/dev-token", json={"user": "bench"}).json()["access_token"]
            with httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {token}"}) as http:
                for i in range(50):
                    http.post("/v1/tasks", json={"title": f"Task {i}", "tags": ["work"], "priority": "medium"})
            results: dict[str, object] = {"runs": RUNS}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
                for screen in ("sign-in", "list"):
                    tti, size = [], []
                    files: object = None
                    for _ in range(RUNS):
                        ctx = browser.new_context(base_url=BASE)
                        if screen == "list":
                            ctx.add_init_script(f"sessionStorage.setItem('taskflow.token', {json.dumps(token)})")
                        page = ctx.new_page()
                        page.goto("/", wait_until="commit")
                        if screen == "sign-in":
                            page.get_by_label("User name").wait_for()
                        else:
                            page.locator("ul.tasks[aria-busy=false] > li").nth(29).wait_for()  # first page: 30
                            page.get_by_label("Search tasks").wait_for()
                        mark = "performance.getEntriesByName('taskflow:interactive')[0].startTime"
                        tti.append(page.evaluate(mark))
                        page.wait_for_load_state("networkidle")
                        got = page.evaluate(TRANSFERRED)
                        size.append(got["total"])
                        files = got["files"]
                        ctx.close()
                    results[screen] = {
                        "time_to_interactive_ms": summary(tti),
                        "transferred_bytes": int(statistics.median(size)),
                        "files": files,
                    }
                browser.close()
            print(json.dumps(results, indent=2))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
