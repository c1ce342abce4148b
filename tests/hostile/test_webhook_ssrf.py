"""Webhook SSRF: a webhook_url that reaches inside our network is refused when a user sets it
(PUT /v1/settings: 422, nothing stored) and again when a reminder is delivered (nothing sent, the
notification marked "refused"), whatever trick names the address: loopback, private and
link-local ranges, IPv4 hidden in IPv6, a DNS name that resolves to one (also only after the URL
was accepted: DNS rebinding), a redirect to one, or a scheme other than http(s)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from taskflow import events
from taskflow.adapters import tables
from taskflow.adapters.webhooks import DirectWebhookSender, system_resolver
from tests.conftest import auth
from tests.functions.test_consumers import structured

INTERNAL = [
    "https://127.0.0.1/hook",
    "https://127.1/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one decimal number
    "https://0x7f000001/hook",
    "https://localhost/hook",  # a DNS name that resolves to loopback
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.10/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",  # unique local
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "https://[::ffff:10.0.0.1]/hook",
    "https://[::ffff:93.184.215.14]/hook",  # mapped, even when public: never needed, a classic bypass
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
    "https://[::]/hook",
    "http://93.184.215.14/hook",  # public, but not https
    "ftp://93.184.215.14/hook",
    "file:///etc/passwd",
    "gopher://93.184.215.14:70/_",
    "javascript:alert(1)",
    "https:///no-host",
    "https://user:pw@93.184.215.14/hook",
    "https://93.184.215.14:99999/hook",
    "https://does-not-resolve.invalid/hook",
]

#: The names a test-controlled resolver answers (the resolver is a port; these names are not real).
FAKE_DNS: dict[str, list[str]] = {
    "private.hooks.test": ["10.20.30.40"],
    "mixed.hooks.test": ["93.184.215.14", "192.168.0.5"],  # one bad answer is enough to refuse
    "mapped.hooks.test": ["::ffff:169.254.169.254"],
    "public.hooks.test": ["93.184.215.14"],
}


class FakeDns:
    """A resolver that answers FAKE_DNS and can be re-pointed (DNS rebinding), else the system's."""

    def __init__(self) -> None:
        self.answers = dict(FAKE_DNS)

    def __call__(self, host: str, port: int) -> list[str]:
        if host in self.answers:
            return self.answers[host]
        return system_resolver(host, port)


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns()


@pytest.fixture
def strict_app(make_app: Any, dns: FakeDns) -> Any:
    """tasks-api and notifier as outside embedded mode: loopback is refused too."""
    app = make_app(allow_loopback_webhooks=False)
    sender = DirectWebhookSender(lambda: app.root.webhook_signing_key, allow_loopback=False, timeout=5, resolve=dns)
    app.root.use(webhooks=sender)
    return app


def _settings(client: Any, user: str = "alice") -> Any:
    return client.get("/v1/settings", headers=auth(user)).get_json()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("url", INTERNAL + [f"https://{name}/hook" for name in FAKE_DNS if "public" not in name])
def test_put_settings_refuses_internal_and_non_http_targets(strict_app: Any, url: str) -> None:
    client = strict_app.apps["tasks-api"].test_client()
    assert (
        client.put("/v1/settings", json={"webhook_url": "https://public.hooks.test/ok"}, headers=auth()).status_code
        == 200
    )
    resp = client.put("/v1/settings", json={"webhook_url": url}, headers=auth())
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"][0]["field"] == "webhook_url"
    assert _settings(client) == {"webhook_url": "https://public.hooks.test/ok"}  # nothing written


class Hooks(BaseHTTPRequestHandler):
    """A webhook receiver on loopback; answers from ``script`` (status, Location) per request."""

    received: list[tuple[str, dict[str, str]]] = []
    script: list[tuple[int, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hooks.received.append((self.path, dict(self.headers.items())))
        status, location = Hooks.script.pop(0) if Hooks.script else (204, None)
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[int]:
    Hooks.received, Hooks.script = [], []
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def reminder_event(user: str = "alice") -> dict[str, Any]:
    """A reminder.due CloudEvent for ``user`` with a new id."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": events.REMINDER_DUE,
        "source": "/tests",
        "subject": "t",
        "datacontenttype": "application/json",
        "data": {
            "reminder_id": str(uuid.uuid4()),
            "task_id": str(uuid.uuid4()),
            "owner_id": user,
            "title": "ping",
            "fire_at": "2030-01-01T09:00:00Z",
        },
    }


def _deliver(app: Any, user: str = "alice") -> dict[str, Any]:
    """One reminder.due event to the notifier, as Dapr delivers it; the notification row it wrote."""
    event = reminder_event(user)
    body, headers = structured(event)
    resp = app.apps["notifier"].test_client().post("/events/reminders", data=body, headers=headers)
    assert resp.get_json() == {"status": "SUCCESS"}, resp.get_data()
    with app.root.engine.connect() as conn:
        row = conn.execute(select(tables.notifications).where(tables.notifications.c.event_id == event["id"])).one()
    return dict(row._mapping)


def _store_url(app: Any, url: str, user: str = "alice") -> None:
    """A URL already stored (set before a policy or DNS change): only the delivery-time check stands."""
    from datetime import UTC, datetime

    with app.root.engine.begin() as conn:
        conn.execute(tables.user_settings.delete().where(tables.user_settings.c.owner_id == user))
        conn.execute(tables.user_settings.insert().values(owner_id=user, webhook_url=url, updated_at=datetime.now(UTC)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "https://[::ffff:127.0.0.1]:{port}/hook",
        "https://10.0.0.1/hook",
        "gopher://127.0.0.1:{port}/_",
    ],
)
def test_delivery_refuses_a_stored_internal_url_and_sends_nothing(strict_app: Any, hooks: int, url: str) -> None:
    _store_url(strict_app, url.format(port=hooks))
    row = _deliver(strict_app)
    assert row["webhook_status"] == "refused"
    assert Hooks.received == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dns_rebinding_after_the_check_reaches_nothing(strict_app: Any, dns: FakeDns, hooks: int) -> None:
    client = strict_app.apps["tasks-api"].test_client()
    url = f"https://public.hooks.test:{hooks}/hook"
    assert client.put("/v1/settings", json={"webhook_url": url}, headers=auth()).status_code == 200
    dns.answers["public.hooks.test"] = ["127.0.0.1"]  # the name now points inside
    row = _deliver(strict_app)
    assert row["webhook_status"] == "refused"
    assert Hooks.received == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_post_goes_to_the_checked_address_with_the_url_host(make_app: Any, dns: FakeDns, hooks: int) -> None:
    """The sender connects to the address it checked (no second lookup to rebind), Host unchanged."""
    app = make_app()  # embedded mode: loopback receivers allowed
    dns.answers["receiver.hooks.test"] = ["127.0.0.1"]
    app.root.use(webhooks=DirectWebhookSender(lambda: app.root.webhook_signing_key, True, timeout=5, resolve=dns))
    client = app.apps["tasks-api"].test_client()
    url = f"http://receiver.hooks.test:{hooks}/hook"
    assert client.put("/v1/settings", json={"webhook_url": url}, headers=auth()).status_code == 200
    assert _deliver(app)["webhook_status"] == "delivered"
    assert [(path, h["Host"]) for path, h in Hooks.received] == [("/hook", f"receiver.hooks.test:{hooks}")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed_nor_retried(make_app: Any, hooks: int, status: int) -> None:
    app = make_app()  # embedded mode: the loopback receiver itself is allowed, its redirect is not followed
    client = app.apps["tasks-api"].test_client()
    assert (
        client.put("/v1/settings", json={"webhook_url": f"http://127.0.0.1:{hooks}/hook"}, headers=auth()).status_code
        == 200
    )
    Hooks.script = [(status, f"http://127.0.0.1:{hooks}/internal-admin")]
    assert _deliver(app)["webhook_status"] == "refused"
    assert [path for path, _ in Hooks.received] == ["/hook"]
