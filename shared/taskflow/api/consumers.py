"""The edges of the event, cron and invocation functions, following the sender's delivery contract.

2xx ``SUCCESS`` when applied or already applied; non-2xx when a retry may succeed (database
down). An event that can never be processed is answered so that the sender dead-letters it
without retrying: ``200 {"status": "DROP"}`` for Dapr, which moves it to ``<topic>-dlq``; with
``TASKFLOW_EVENT_DELIVERY=knative``, ``400`` ("unparsable event" in Knative's data-plane
contract: not retried), which KafkaSource hands to its dead-letter sink.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Request, Response
from sqlalchemy.exc import DBAPIError, OperationalError

from taskflow import config, events, runtime
from taskflow.api.http import HttpError, json_response, problem, require_app_token
from taskflow.service_layer.handlers import RetryableError

log = logging.getLogger("taskflow.consumer")

SUCCESS = {"status": "SUCCESS"}
DROP = {"status": "DROP"}


def healthz(request: Request) -> Response | None:
    if request.method == "GET" and request.path.rstrip("/") == "/healthz":
        return json_response({"status": "ok"})
    return None


def guarded(request: Request, run: Callable[[], Response]) -> Response:
    """Health check, app-token check and problem+json mapping common to every sidecar-facing route."""
    health = healthz(request)
    if health is not None:
        return health
    try:
        require_app_token(request)
        return run()
    except HttpError as err:
        return problem(err, request.path)


def consume(
    request: Request,
    accept: tuple[str, ...],
    apply: Callable[[events.Received], str],
) -> Response:
    """Parse one CloudEvent delivery and apply it; the answer tells Dapr what to do next."""

    def run() -> Response:
        if request.method != "POST":
            raise HttpError(405, "Method not allowed", "deliveries are POST", headers={"Allow": "POST"})
        try:
            received = events.parse(dict(request.headers), request.get_data())
        except events.PoisonEvent as exc:
            if config.settings().event_delivery == "knative":
                log.warning("REJECT 400 (to the dead-letter sink): %s", exc)
                return problem(HttpError(400, "Unprocessable event", str(exc), slug="poison-event"), request.path)
            log.warning("DROP (to dead-letter topic): %s", exc)
            return json_response(DROP)
        if received.type not in accept:
            # KafkaSource cannot filter by type: events this function does not handle are done.
            log.info("ignored %s (%s): not handled here", received.id, received.type)
            return json_response(SUCCESS)
        try:
            outcome = apply(received)
        except (RetryableError, OperationalError, DBAPIError) as exc:
            log.warning("RETRY %s (%s): %s", received.id, received.type, type(exc).__name__ + ": " + str(exc)[:200])
            return json_response({"status": "RETRY"}, status=500)
        log.info("%s %s (%s)", outcome, received.id, received.type)
        return json_response(SUCCESS)

    return guarded(request, run)


def cron(request: Request, tick: Callable[[], dict[str, Any]]) -> Response:
    """A cron binding (or PingSource) trigger: POST with an empty body; answer exactly 200."""

    def run() -> Response:
        if request.method != "POST":
            raise HttpError(405, "Method not allowed", "cron triggers are POST", headers={"Allow": "POST"})
        try:
            result = tick()
        except (OperationalError, DBAPIError) as exc:
            log.warning("cron tick failed, next tick retries: %s", type(exc).__name__)
            raise HttpError(503, "Database unavailable", "the tick will be retried") from exc
        return json_response(result)

    return guarded(request, run)


class LiveConfig:
    """Live settings from the configuration store: read on each tick, updated by pushes."""

    def __init__(self, defaults: dict[str, str]) -> None:
        self.defaults = dict(defaults)
        self.values = dict(defaults)
        self._lock = threading.Lock()
        self._subscribed = False

    def refresh(self) -> None:
        """Read the store; a key absent from it falls back to its default."""
        store = runtime.config_store()
        try:
            if not self._subscribed:
                store.subscribe(list(self.defaults))
                self._subscribed = True
            items = store.get(list(self.defaults))
        except Exception as exc:
            log.warning("configuration store unavailable, keeping current values: %s", exc)
            return
        with self._lock:
            self.values = {k: items.get(k, default) for k, default in self.defaults.items()}

    def push(self, request: Request) -> Response:
        """Dapr configuration push: ``POST /configuration/<store>/<key>`` with ``{"id","items"}``."""
        try:
            body = json.loads(request.get_data() or b"{}")
            items = body.get("items", {})
            with self._lock:
                for key, item in items.items():
                    if key in self.values and isinstance(item, dict) and "value" in item:
                        self.values[key] = str(item["value"])
        except (ValueError, AttributeError):
            log.warning("malformed configuration push ignored")
        return json_response({"status": "ok"})

    def get_int(self, key: str) -> int:
        try:
            return int(self.values[key])
        except (KeyError, ValueError):
            return int(config.settings().reminder_grace_seconds)
