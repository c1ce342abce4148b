"""schemathesis hooks for tests/hostile/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

A valid ``Idempotency-Key`` on a positive ``POST /v1/tasks`` of the fuzzing and stateful phases gets
a fresh UUID before it is sent. The key names the task it creates (``uuid5(user, key)``), so the same
generated key and body in two scenarios made the same task, and a DELETE in one scenario left the
other with a "created" task whose history was 404 (schemathesis' ST302 check, flaky: its workers
interleave scenarios differently each run). Replaying a key is the function tests' and the chaos
suite's business. The coverage phase's cases (missing or invalid headers, keys out of 1..255) are
sent as generated, so what they check still holds."""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    meta = getattr(case, "meta", None)
    if meta is None or case.method.upper() != "POST" or case.path != "/v1/tasks" or not case.headers:
        return
    if str(meta.generation.mode.value) != "positive" or str(meta.phase.name.value) not in ("fuzzing", "stateful"):
        return
    for name in list(case.headers):
        value = case.headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and 1 <= len(value) <= 255:
            case.headers[name] = str(uuid.uuid4())
