"""Embedded mode: every function in one process, wired by in-process adapters.

The function code is the same as in the stack: events reach the consumers through the
Subscriptions in ``dapr/subscriptions.yaml`` (same routes, same rules, same CloudEvents), and
timers post to the cron routes as the cron bindings do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from taskflow import bootstrap, config
from taskflow.adapters.inprocess import DirectInvoker, InProcessBus, load_subscriptions
from taskflow.functions import FUNCTIONS
from taskflow.service_layer import archive, outbox

log = logging.getLogger("taskflow.embedded")


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "functions").is_dir() and (parent / "dapr").is_dir():
            return parent
    return Path.cwd()


def load_apps(root: Path) -> dict[str, Flask]:
    """One functions-framework app per function, keyed by Dapr app-id."""
    import functions_framework

    apps = {}
    for fn in FUNCTIONS:
        source = root / "functions" / fn.folder / "main.py"
        apps[fn.app_id] = functions_framework.create_app(  # type: ignore[no-untyped-call]
            target=fn.folder, source=str(source)
        )
    return apps


@dataclass
class Embedded:
    """All seven functions in this process, sharing one composition root."""

    root: bootstrap.Root = field(default_factory=lambda: bootstrap.Root(config.load()))
    repo: Path = field(default_factory=repo_root)
    apps: dict[str, Flask] = field(default_factory=dict)
    bus: InProcessBus | None = None
    _timers: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, timers: bool = True, background: bool = True) -> Embedded:
        """Load the functions and wire them; ``background``: also run the event bus and the timers
        here (a server with several worker processes runs them in one of them only)."""
        self.apps = load_apps(self.repo)
        token = self.root.settings.app_api_token
        headers = {"dapr-api-token": token} if token else {}

        def invoke(app_id: str, method: str, query: dict[str, str]) -> tuple[int, bytes]:
            resp = self.apps[app_id].test_client().get("/" + method.lstrip("/"), query_string=query, headers=headers)
            return resp.status_code, resp.get_data()

        self.root.use(invoker=DirectInvoker(invoke))
        bootstrap.install(self.root)
        _ = self.root.engine  # create and migrate the database before serving
        if background:
            self.start_background(timers)
        return self

    def start_background(self, timers: bool = True) -> None:
        """The in-process bus (the publisher from now on) and the cron timers."""

        def deliver(app_id: str, path: str, body: bytes, hdrs: dict[str, str]) -> tuple[int, bytes]:
            resp = self.apps[app_id].test_client().post(path, data=body, headers=hdrs)
            return resp.status_code, resp.get_data()

        subs = load_subscriptions(self.repo / "dapr" / "subscriptions.yaml")
        self.bus = InProcessBus(subs, deliver, app_token=self.root.settings.app_api_token)
        self.bus.on_settled = self._mark_sent
        self.root.use(publisher=self.bus)
        self.bus.start()
        if timers:
            for app_id, route, interval in self.cron_schedules():
                self._timer(app_id, interval, route)

    def cron_schedules(self) -> list[tuple[str, str, float]]:
        """(app-id, route, seconds) of each timer, as the cron bindings of the stack and chart run
        them: the relay, the reminder tick, the exports' housekeeping (stale and expired exports,
        orphan objects) and, on a route and timer of its own, the daily audit archive."""
        s, env = self.root.settings, self.root.environ
        return [
            ("event-fanout", "/cron", s.fanout_interval),
            ("reminder-dispatch", "/cron", s.reminder_interval),
            ("exports", "/cron", float(env.get("TASKFLOW_EXPORTS_INTERVAL") or 300)),
            ("exports", archive.CRON_ROUTE, float(env.get("TASKFLOW_ARCHIVE_INTERVAL") or archive.DAILY)),
        ]

    def _mark_sent(self, event_ids: list[str]) -> None:
        outbox.mark_sent(self.root.uow(), self.root.clock, *event_ids)

    def tick(self, app_id: str, route: str = "/cron") -> Any:
        """One cron trigger, exactly as the cron binding sends it (empty body, JSON content type)."""
        token = self.root.settings.app_api_token
        hdrs = {"content-type": "application/json", **({"dapr-api-token": token} if token else {})}
        resp = self.apps[app_id].test_client().post(route, data=b"", headers=hdrs)
        return resp.get_json(silent=True)

    def _timer(self, app_id: str, interval: float, route: str = "/cron") -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick(app_id, route)
                except Exception:
                    log.exception("%s tick (%s) failed", app_id, route)

        t = threading.Thread(target=loop, name=f"cron-{app_id}{route}", daemon=True)
        t.start()
        self._timers.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self.bus is not None:
            self.bus.stop()
        bootstrap.install(None)
        self.root.close()
