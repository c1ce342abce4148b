"""Every function of the catalogue (taskflow.functions) is traced: it continues an incoming
``traceparent`` and answers with ``traceresponse``, also its cron route. A function added to the
catalogue without the request wrapper (``observability.served``) fails here."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from taskflow.functions import FUNCTIONS

TRACERESPONSE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


@pytest.mark.parametrize("app_id", [f.app_id for f in FUNCTIONS])
def test_every_function_continues_the_trace_and_answers_traceresponse(app: Any, app_id: str) -> None:
    trace_id = secrets.token_hex(16)
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    resp = app.apps[app_id].test_client().get("/healthz", headers={"traceparent": header})
    match = TRACERESPONSE.match(resp.headers.get("traceresponse", ""))
    assert match, f"{app_id} answered {resp.status_code} without traceresponse"
    assert match.group(1) == trace_id
