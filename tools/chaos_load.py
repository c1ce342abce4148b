"""The chaos suite's client side (tools/chaos.py): a careful API client under steady mixed load, and the
webhook receiver. Everything a client was told (2xx) is recorded, so the invariants can count losses
and duplicates afterwards.

A careful client: every create carries an ``Idempotency-Key`` and is retried with the same key and
body on connection errors, 5xx and 409 "in progress"; an update carries ``If-Match`` and, when a retry
answers 412, reads the task back to learn whether its first attempt landed; a delete answered 404 on
a retry was applied by the first attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

RETRY_FOR = 120.0  # a careful client gives up on one request after this long (then it is "unacknowledged")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def token(user: str, secret: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 6 * 3600}, secret, algorithm="HS256")


# ------------------------------------------------------------------------------ webhook receiver


class Receiver:
    """A webhook endpoint: checks each signature, counts every delivery id, applies each id once."""

    def __init__(self, port: int, signing_key: Callable[[], str]) -> None:
        self.port = port
        self.signing_key = signing_key
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()  # event id -> deliveries
        self.applied: dict[str, dict[str, Any]] = {}  # event id -> the notification, applied once
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.deliver(self.path, dict(self.headers.items()), body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def deliver(self, path: str, headers: dict[str, str], body: bytes) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        event_id = h.get("x-taskflow-event-id", "")
        expected = "sha256=" + hmac.new(self.signing_key().encode(), body, hashlib.sha256).hexdigest()
        with self.lock:
            if not hmac.compare_digest(expected, h.get("x-taskflow-signature", "")):
                self.bad_signatures += 1
                return
            self.received[event_id] += 1
            if event_id not in self.applied:  # the receiver de-duplicates on the delivery id
                self.applied[event_id] = {"path": path, **json.loads(body)}


# ------------------------------------------------------------------------------ the load


@dataclass
class Known:
    """What the client was told about one task (the last acknowledged answer)."""

    id: str
    etag: str
    title: str
    status: str = "open"
    deleted: bool = False
    recurring: bool = False
    occurrence: int = 1
    uncertain: bool = False  # a request on it got no answer: its last effect is unknown


@dataclass
class Record:
    """Everything the clients saw, for the invariants and the table."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)  # "201", "conn-error", ...
    ops: Counter[str] = field(default_factory=Counter)  # acknowledged operations by kind
    bad_5xx: list[str] = field(default_factory=list)  # 5xx other than 503 + Retry-After
    unacknowledged: list[str] = field(default_factory=list)
    creates: dict[str, str | None] = field(default_factory=dict)  # Idempotency-Key -> task id (None: no answer)
    tasks: dict[str, Known] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user -> token
    reminders_set: int = 0

    def status(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1


class Worker(threading.Thread):
    """One user writing steadily until ``stop`` is set: creates (some recurring with COUNT, some with a
    reminder that falls due during the run), If-Match updates, completes, deletes."""

    def __init__(
        self,
        n: int,
        base_url: str,
        secret: str,
        hook_base: str,
        seed: int,
        record: Record,
        stop: threading.Event,
        reminders_until: float,
    ) -> None:
        super().__init__(name=f"load-{n}", daemon=True)
        self.rng = random.Random(seed * 1000 + n)
        self.user = f"chaos-{seed}-{n}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]}"
        self.record = record
        self.stop_event = stop
        self.reminders_until = reminders_until  # wall-clock time after which no reminder is set
        self.hook_url = f"{hook_base}/hooks/{self.user}"
        tok = token(self.user, secret)
        record.users[self.user] = tok
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {tok}"}, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        self.mine: list[Known] = []
        self.error: BaseException | None = None

    # ---- one careful request

    def call(
        self, method: str, path: str, ok: Callable[[httpx.Response], bool], **kw: Any
    ) -> tuple[httpx.Response | None, int]:
        """Send until an answer ``ok`` accepts or that is a final 4xx; retries connection errors, 5xx
        (after Retry-After) and 409 "in progress". Returns the last answer and how many attempts."""
        deadline = time.monotonic() + RETRY_FOR
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.client.request(method, path, **kw)
            except httpx.TransportError as e:
                self.record.status(f"conn-error:{type(e).__name__}")
                resp = None
            if resp is not None:
                code = resp.status_code
                self.record.status(str(code))
                if code >= 500:
                    if code != 503 or "retry-after" not in resp.headers:
                        with self.record.lock:
                            self.record.bad_5xx.append(f"{method} {path} -> {code} {resp.text[:200]}")
                elif code == 409 and "idempotency" in resp.text:
                    pass  # a request with this key is still running (or died): retry
                elif ok(resp) or code < 500:
                    return resp, attempt
            if time.monotonic() > deadline or (self.stop_event.is_set() and time.monotonic() > deadline - 60):
                with self.record.lock:
                    self.record.unacknowledged.append(f"{method} {path} after {attempt} attempts")
                return None, attempt
            retry_after = resp.headers.get("retry-after") if resp is not None else None
            delay = float(retry_after) if retry_after and retry_after.isdigit() else min(2.0, 0.2 * attempt)
            time.sleep(delay * (0.5 + self.rng.random()))

    # ---- operations

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # a bug in the client: reported, not hidden
            self.error = e

    def _run(self) -> None:
        resp, _ = self.call("PUT", "/v1/settings", lambda r: r.status_code == 200, json={"webhook_url": self.hook_url})
        if resp is None or resp.status_code != 200:
            raise RuntimeError(
                f"PUT /v1/settings: {resp.status_code if resp else 'no answer'} {resp.text if resp else ''}"
            )
        ops: list[tuple[str, int]] = [("create", 35), ("update", 25), ("complete", 22), ("delete", 8), ("discover", 10)]
        names = [o for o, _ in ops]
        weights = [w for _, w in ops]
        while not self.stop_event.is_set():
            op = self.rng.choices(names, weights)[0]
            getattr(self, op)()
            time.sleep(self.rng.uniform(0.02, 0.15))

    def _live(self, pred: Callable[[Known], bool] = lambda k: True) -> Known | None:
        cands = [k for k in self.mine if not k.deleted and pred(k)]
        return self.rng.choice(cands) if cands else None

    def create(self) -> None:
        key = uuid.UUID(int=self.rng.getrandbits(128)).hex
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "title": f"chaos {key}",
            "priority": self.rng.choice(["none", "low", "medium", "high", "urgent"]),
            "due_at": iso(now + timedelta(days=self.rng.randint(1, 20))),
            "tags": self.rng.sample(["a", "b", "c", "d"], self.rng.randint(0, 2)),
        }
        recurring = self.rng.random() < 0.35
        if recurring:
            body["recurrence"] = {"rule": f"FREQ=DAILY;COUNT={self.rng.randint(2, 4)}", "anchor": "due"}
        reminder = not recurring and self.rng.random() < 0.4 and time.time() + 8 < self.reminders_until
        if reminder:
            fire = min(time.time() + self.rng.uniform(5, 45), self.reminders_until)
            body["reminders"] = [{"at": iso(datetime.fromtimestamp(fire, UTC))}]
        with self.record.lock:
            self.record.creates[key] = None
        resp, _ = self.call(
            "POST", "/v1/tasks", lambda r: r.status_code == 201, json=body, headers={"Idempotency-Key": key}
        )
        if resp is None:
            return
        if resp.status_code != 201:
            raise RuntimeError(f"create answered {resp.status_code}: {resp.text[:300]}")
        task = resp.json()
        known = Known(task["id"], resp.headers["etag"], task["title"], recurring=recurring)
        self.mine.append(known)
        with self.record.lock:
            self.record.creates[key] = task["id"]
            self.record.tasks[task["id"]] = known
            self.record.ops["create"] += 1
            self.record.reminders_set += 1 if reminder else 0

    def update(self) -> None:
        k = self._live()
        if k is None:
            return
        title = f"{k.title.split(' v')[0]} v{self.rng.randint(1, 10**6)}"
        resp, _ = self.call(
            "PATCH", f"/v1/tasks/{k.id}", lambda r: r.status_code == 200, json={"title": title},
            headers={"If-Match": k.etag},
        )  # fmt: skip
        if resp is None:
            k.uncertain = True
            return
        if resp.status_code == 200:
            self._ack(k, resp, "update")
        elif resp.status_code == 412:  # a retry after the first attempt landed, or an earlier answer was lost
            self._learn(k, "update", lambda t: t["title"] == title)
        else:
            raise RuntimeError(f"PATCH {k.id} answered {resp.status_code}: {resp.text[:300]}")

    def complete(self) -> None:
        k = self._live(lambda t: t.status == "open" and (t.recurring or self.rng.random() < 0.3))
        if k is None:
            return
        resp, _ = self.call("POST", f"/v1/tasks/{k.id}/complete", lambda r: r.status_code == 200)
        if resp is None:
            k.uncertain = True
            return
        if resp.status_code != 200:
            raise RuntimeError(f"complete {k.id} answered {resp.status_code}: {resp.text[:300]}")
        self._ack(k, resp, "complete")

    def delete(self) -> None:
        k = self._live(lambda t: not t.recurring)
        if k is None:
            return
        resp, attempts = self.call("DELETE", f"/v1/tasks/{k.id}", lambda r: r.status_code == 204)
        if resp is None:
            k.uncertain = True
            return
        if resp.status_code == 204 or (resp.status_code == 404 and attempts > 1):
            k.deleted = True
            with self.record.lock:
                self.record.ops["delete"] += 1
        else:
            raise RuntimeError(f"DELETE {k.id} answered {resp.status_code}: {resp.text[:300]}")

    def discover(self) -> None:
        """Pick up the next occurrences the recurrence consumer created (so they get completed too)."""
        resp, _ = self.call(
            "GET", "/v1/tasks", lambda r: r.status_code == 200, params={"recurring": "true", "limit": "200"}
        )
        if resp is None or resp.status_code != 200:
            return
        known = {k.id for k in self.mine}
        for t in resp.json()["items"]:
            if t["id"] not in known:
                k = Known(t["id"], f'"{t["version"]}"', t["title"], recurring=True, occurrence=t["occurrence"])
                k.etag = ""
                self._refresh(k)
                if k.etag:
                    self.mine.append(k)
                    with self.record.lock:
                        self.record.tasks[k.id] = k

    def _refresh(self, k: Known) -> dict[str, Any] | None:
        resp, _ = self.call("GET", f"/v1/tasks/{k.id}", lambda r: r.status_code == 200)
        if resp is None or resp.status_code != 200:
            return None
        t = resp.json()
        k.etag, k.title, k.status = resp.headers["etag"], t["title"], t["status"]
        return t  # type: ignore[no-any-return]

    def _ack(self, k: Known, resp: httpx.Response, op: str) -> None:
        t = resp.json()
        with self.record.lock:
            k.etag, k.title, k.status = resp.headers["etag"], t["title"], t["status"]
            self.record.ops[op] += 1

    def _learn(self, k: Known, op: str, applied: Callable[[dict[str, Any]], bool]) -> None:
        """A retry answered 412: did the first attempt land? Read the task back."""
        t = self._refresh(k)
        if t is not None and applied(t):
            with self.record.lock:
                self.record.ops[op] += 1
