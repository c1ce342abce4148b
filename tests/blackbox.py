"""What the black-box suites (tests/e2e on the local stack, tests/cluster on Kubernetes) share:
a signed client for one new user, polling until the event pipeline has caught up, history types."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx


def token(user: str, secret: str) -> str:
    """A one-hour HS256 token for ``user``, as `taskflow token` mints them."""
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def user_client(base_url: str, secret: str, timeout: float) -> Iterator[httpx.Client]:
    """An API client signed in as a fresh user (its id in ``client.user``)."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {token(user, secret)}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as c:
        c.user = user  # type: ignore[attr-defined]
        yield c


def eventually(check: Callable[[], Any], timeout: float = 45.0, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last answer after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def history_types(api: httpx.Client, task_id: str) -> list[str]:
    """The short event types of a task's history, oldest first (``created``, ``completed``, ...)."""
    resp = api.get(f"/v1/tasks/{task_id}/history")
    assert resp.status_code == 200, resp.text
    return [h["type"].split(".")[3] for h in resp.json()["items"]]
