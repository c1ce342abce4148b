"""reminder-dispatch: cron-triggered; claims due reminders and publishes reminder.due."""

from datetime import timedelta

import functions_framework
from flask import Request, Response

from taskflow import config, runtime
from taskflow.api.consumers import LiveConfig, cron, guarded
from taskflow.domain.model import utcnow
from taskflow.observability import configure_logging
from taskflow.service_layer import handlers

configure_logging()

GRACE_KEY = "reminder_grace_seconds"
_live: LiveConfig | None = None


def _config() -> LiveConfig:
    global _live
    if _live is None:
        _live = LiveConfig({GRACE_KEY: str(config.settings().reminder_grace_seconds)})
    return _live


def _tick() -> dict[str, int]:
    live = _config()
    live.refresh()
    now = utcnow()
    late_after = timedelta(seconds=max(60.0, 3 * config.settings().reminder_interval))
    result = handlers.dispatch_reminders(runtime.engine(), now, timedelta(seconds=live.get_int(GRACE_KEY)), late_after)
    runtime.publish_after_commit(result.envelopes, now)
    return {"fired": result.fired, "late": result.late, "missed": result.missed}


@functions_framework.http
def reminder_dispatch(request: Request) -> Response:
    if request.path.startswith("/configuration/"):
        return guarded(request, lambda: _config().push(request))
    return cron(request, _tick)
