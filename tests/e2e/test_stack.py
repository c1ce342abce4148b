"""End to end through the local stack: real daprd sidecars, real Kafka (KRaft), real PostgreSQL.

Every Dapr building block TaskFlow uses is exercised here through the sidecar; nothing is faked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from taskflow.api.app import idempotency_state_key
from tests import blackbox
from tests.blackbox import eventually, history_types, iso, user_client

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

pytestmark = pytest.mark.e2e

# Ports and database of this suite's stack; a developer sharing the machine picks their own.
API_PORT = int(os.environ.get("TASKFLOW_E2E_PORT", "18080"))
HOOK_PORT = int(os.environ.get("TASKFLOW_E2E_HOOK_PORT", str(API_PORT + 19)))
DAPR_HTTP_BASE = int(os.environ.get("TASKFLOW_E2E_DAPR_HTTP_BASE", "13500"))
DAPR_GRPC_BASE = int(os.environ.get("TASKFLOW_E2E_DAPR_GRPC_BASE", "13550"))
METRICS_BASE = int(os.environ.get("TASKFLOW_E2E_METRICS_BASE", "19190"))
DATABASE = os.environ.get("TASKFLOW_E2E_DATABASE", "taskflow_e2e")
JWT_SECRET = secrets.token_urlsafe(32)


class Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    answers: dict[str, list[int]] = {}  # path -> status codes to answer first (then 200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hooks.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        queued = Hooks.answers.get(self.path, [])
        self.send_response(queued.pop(0) if queued else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from stack import Stack

    env = {
        "TASKFLOW_JWT_SECRET": JWT_SECRET,  # written into the secret store; stripped from the functions
        "TASKFLOW_FANOUT_INTERVAL": "1",
        "TASKFLOW_REMINDER_INTERVAL": "2",
        "TASKFLOW_WEBHOOK_BASE_URL": f"http://127.0.0.1:{HOOK_PORT}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server = ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # a database of its own, recreated empty: nothing left by an earlier run (or by `nox -s stack`) can
    # fire a reminder, replay an idempotency record or relay an outbox row into these tests
    s = Stack(
        port=API_PORT,
        dapr_http_base=DAPR_HTTP_BASE,
        dapr_grpc_base=DAPR_GRPC_BASE,
        metrics_base=METRICS_BASE,
        app_metrics_base=int(os.environ.get("TASKFLOW_E2E_APP_METRICS_BASE", "19464")),
        otlp_grpc_port=int(os.environ.get("TASKFLOW_E2E_OTLP_GRPC_PORT", "14317")),
        otlp_http_port=int(os.environ.get("TASKFLOW_E2E_OTLP_HTTP_PORT", "14318")),
        collector_prometheus_port=int(os.environ.get("TASKFLOW_E2E_COLLECTOR_PROM_PORT", "18889")),
        database=DATABASE,
        fresh_database=True,
        # every sidecar reads taskflow-secrets from moto's AWS Secrets Manager, as values-cloud.yaml does
        # on AWS (TASKFLOW_E2E_SECRET_STORE=file runs the suite on the local file store instead)
        secret_store=os.environ.get("TASKFLOW_E2E_SECRET_STORE", "aws"),
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()
        server.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def db(stack: Any) -> Any:
    from stack import SECRETS_FILE

    url = json.loads(SECRETS_FILE.read_text())["database-url"]
    engine = create_engine(url)
    yield engine
    engine.dispose()


def token(user: str) -> str:
    return blackbox.token(user, JWT_SECRET)


@pytest.fixture
def api(stack: Any) -> Iterator[httpx.Client]:
    with user_client(stack.api_url, JWT_SECRET, timeout=30) as c:
        yield c


# --- pub/sub + service invocation -----------------------------------------------------------


def test_create_update_complete_reach_audit_through_kafka_and_history_through_invocation(api: httpx.Client) -> None:
    task = api.post("/v1/tasks", json={"title": "e2e"}).json()
    api.patch(f"/v1/tasks/{task['id']}", json={"priority": "high"})
    api.post(f"/v1/tasks/{task['id']}/complete")
    assert eventually(lambda: history_types(api, task["id"]) == ["created", "updated", "completed"])
    entry = api.get(f"/v1/tasks/{task['id']}/history").json()["items"][1]
    assert entry["changes"] == {"priority": ["none", "high"]} and entry["actor"] == api.user  # type: ignore[attr-defined]
    other = httpx.get(
        f"{api.base_url}/v1/tasks/{task['id']}/history", headers={"Authorization": f"Bearer {token('x')}"}
    )
    assert other.status_code == 404


def test_completing_a_recurring_task_creates_the_next_occurrence_once(api: httpx.Client) -> None:
    task = api.post(
        "/v1/tasks",
        json={
            "title": "weekly",
            "due_at": "2030-03-04T15:00:00Z",
            "timezone": "Europe/Berlin",
            "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO"},
        },
    ).json()
    api.post(f"/v1/tasks/{task['id']}/complete")
    api.post(f"/v1/tasks/{task['id']}/reopen")
    api.post(f"/v1/tasks/{task['id']}/complete")

    def occurrences() -> list[dict[str, Any]]:
        items = api.get("/v1/tasks?status=all&recurring=true").json()["items"]
        return [t for t in items if t["series_id"] == task["id"]]

    eventually(lambda: len(occurrences()) == 2)
    time.sleep(3)  # a second creation would show up by now
    series = sorted(occurrences(), key=lambda t: t["occurrence"])
    assert [t["occurrence"] for t in series] == [1, 2]
    assert series[1]["due_at"] == "2030-03-11T15:00:00Z"


def test_the_same_event_delivered_twice_has_one_effect(stack: Any, api: httpx.Client, db: Any) -> None:
    task = api.post("/v1/tasks", json={"title": "dup"}).json()
    eventually(lambda: history_types(api, task["id"]) == ["created"])
    with db.connect() as conn:
        event = conn.execute(
            text("SELECT event FROM outbox WHERE event LIKE :p"), {"p": f'%"subject":"{task["id"]}"%'}
        ).scalar_one()
    sidecar = stack.apps["tasks-api"].dapr_http_url
    for _ in range(2):  # a re-publish carries the same CloudEvent id
        resp = httpx.post(
            f"{sidecar}/v1.0/publish/taskflow-pubsub/task-events",
            content=event,
            params={"metadata.partitionKey": task["id"]},
            headers={"content-type": "application/cloudevents+json"},
        )
        assert resp.status_code == 204
    time.sleep(4)
    assert history_types(api, task["id"]) == ["created"]


# --- cron bindings ------------------------------------------------------------------------


def test_cron_driven_fanout_relays_outbox_rows_nobody_published(api: httpx.Client, db: Any) -> None:
    """An event committed while the sidecar was unreachable is relayed by event-fanout's cron binding."""
    task = api.post("/v1/tasks", json={"title": "stranded"}).json()
    eventually(lambda: history_types(api, task["id"]) == ["created"])
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "type": "com.taskflow.task.updated.v1",
        "source": "/e2e",
        "subject": task["id"],
        "time": iso(now),
        "datacontenttype": "application/json",
        "data": {
            "task": {**task, "title": "renamed offline", "updated_at": iso(now)},
            "actor": "e2e",
            "changes": {"title": ["stranded", "renamed offline"]},
        },
    }
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (event_id, topic, partition_key, event, created_at, attempts) "
                "VALUES (:id, 'task-events', :k, :e, now(), 0)"
            ),
            {"id": event_id, "k": task["id"], "e": json.dumps(envelope)},
        )
    eventually(lambda: history_types(api, task["id"]) == ["created", "updated"])
    with db.connect() as conn:
        assert conn.execute(text("SELECT sent_at FROM outbox WHERE event_id = :id"), {"id": event_id}).scalar()


def test_a_backlog_is_relayed_in_bulk_with_ids_and_partition_keys_kept(api: httpx.Client, db: Any) -> None:
    """Several stranded events go out in one bulk publish; Kafka keys them by task, ids unchanged."""
    import kafka_node

    tasks = [api.post("/v1/tasks", json={"title": f"bulk {i}"}).json() for i in range(4)]
    for t in tasks:
        eventually(lambda t=t: history_types(api, t["id"]) == ["created"])
    now = datetime.now(UTC)
    ids = {}
    with db.begin() as conn:
        for t in tasks:
            event_id = str(uuid.uuid4())
            ids[event_id] = t["id"]
            envelope = {
                "specversion": "1.0",
                "id": event_id,
                "type": "com.taskflow.task.updated.v1",
                "source": "/e2e",
                "subject": t["id"],
                "time": iso(now),
                "datacontenttype": "application/json",
                "data": {"task": {**t, "updated_at": iso(now)}, "actor": "e2e", "changes": {"title": ["a", "b"]}},
            }
            conn.execute(
                text(
                    "INSERT INTO outbox (event_id, topic, partition_key, event, created_at, attempts) "
                    "VALUES (:id, 'task-events', :k, :e, now(), 0)"
                ),
                {"id": event_id, "k": t["id"], "e": json.dumps(envelope)},
            )
    for t in tasks:
        eventually(lambda t=t: history_types(api, t["id"]) == ["created", "updated"])
    records = {
        json.loads(r["value"])["id"]: r
        for r in kafka_node.consume("task-events", timeout=5)
        if r["value"].startswith("{") and json.loads(r["value"]).get("id") in ids
    }
    assert set(records) == set(ids)
    assert all(records[event_id]["key"] == task_id for event_id, task_id in ids.items())


# --- reminders, notifier, output binding, configuration ------------------------------------


def test_reminder_reaches_inbox_once_and_webhook_with_a_valid_signature(stack: Any, api: httpx.Client) -> None:
    from stack import SECRETS_FILE

    hook = f"http://127.0.0.1:{HOOK_PORT}/hooks/{api.user}"  # type: ignore[attr-defined]
    assert api.put("/v1/settings", json={"webhook_url": hook}).status_code == 200
    Hooks.answers[f"/hooks/{api.user}"] = [500]  # the receiver fails once: retried; the inbox stays single
    due = datetime.now(UTC) + timedelta(seconds=3)
    task = api.post("/v1/tasks", json={"title": "ping", "due_at": iso(due), "reminders": [{"offset": "PT0S"}]}).json()
    items = eventually(lambda: api.get("/v1/notifications").json()["items"])
    assert len(items) == 1 and items[0]["task_id"] == task["id"] and items[0]["late"] is False

    def mine() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in Hooks.received if json.loads(b).get("task_id") == task["id"]]

    eventually(lambda: len(mine()) >= 2)
    headers, body = mine()[-1]
    key = json.loads(SECRETS_FILE.read_text())["webhook-signing-key"].encode()
    assert headers["x-taskflow-signature"] == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert json.loads(body) == items[0]
    assert len({h["x-taskflow-event-id"] for h, _ in mine()}) == 1
    time.sleep(5)  # two more reminder ticks: nothing new
    assert len(api.get("/v1/notifications").json()["items"]) == 1


def _backdated_reminder(api: httpx.Client, db: Any, title: str) -> str:
    """A task whose reminder should have fired three hours ago (late within 24 h, missed beyond 1 h)."""
    later = iso(datetime.now(UTC) + timedelta(days=2))
    task = api.post("/v1/tasks", json={"title": title, "due_at": later, "reminders": [{"offset": "-PT1H"}]}).json()
    with db.begin() as conn:
        conn.execute(
            text("UPDATE reminders SET fire_at = now() - interval '3 hours' WHERE task_id = :t"), {"t": task["id"]}
        )
    return str(task["id"])


def _reminder_status(db: Any, task_id: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(text("SELECT status FROM reminders WHERE task_id = :t"), {"t": task_id}).scalar()


def _set_grace(db: Any, seconds: int | None) -> None:
    """What an operator does: change (or delete) the live setting reminder_grace_seconds in the store."""
    with db.begin() as conn:
        conn.execute(text("DELETE FROM taskflow_config WHERE key = 'reminder_grace_seconds'"))
        if seconds is not None:
            conn.execute(
                text("INSERT INTO taskflow_config (key, value, version) VALUES ('reminder_grace_seconds', :v, '1')"),
                {"v": str(seconds)},
            )


def test_configuration_store_changes_a_running_function(api: httpx.Client, db: Any) -> None:
    _set_grace(db, None)  # start from the default grace period (24 h)
    time.sleep(3)
    first = _backdated_reminder(api, db, "within default grace")
    assert eventually(lambda: _reminder_status(db, first) == "fired")
    assert [n["late"] for n in eventually(lambda: api.get("/v1/notifications").json()["items"])] == [True]
    _set_grace(db, 3600)  # an operator shortens the grace period to one hour, live
    try:
        second = _backdated_reminder(api, db, "outside the new grace")
        assert eventually(lambda: _reminder_status(db, second) == "missed")
        assert len(api.get("/v1/notifications").json()["items"]) == 1
    finally:
        _set_grace(db, None)


def test_live_settings_still_change_after_the_sidecar_restarts(stack: Any, api: httpx.Client, db: Any) -> None:
    """reminder-dispatch's daprd crashes and comes back while the function keeps running: the function
    subscribes to the configuration store again, so a setting changed after the restart takes effect
    (the SDK's own subscription ended silently, and live settings froze until the process restarted)."""
    app_log = stack.apps["reminder-dispatch"].app.log

    def resubscriptions() -> int:
        return app_log.read_text(errors="replace").count("subscribed again")

    _set_grace(db, None)
    warm = _backdated_reminder(api, db, "before the restart")  # the function is subscribed
    assert eventually(lambda: _reminder_status(db, warm) == "fired")
    before = resubscriptions()
    stack.restart_sidecar("reminder-dispatch")
    # the new stream is open (and the store read again) before the change: only the stream can bring it
    eventually(lambda: resubscriptions() > before, timeout=60)
    _set_grace(db, 3600)
    try:
        after = _backdated_reminder(api, db, "changed after the restart")
        assert eventually(lambda: _reminder_status(db, after) == "missed")
    finally:
        _set_grace(db, None)


# --- state, secrets, app token, dead letters -----------------------------------------------


def test_idempotency_records_live_in_the_dapr_state_store_with_a_ttl(api: httpx.Client, db: Any) -> None:
    key = f"e2e-{uuid.uuid4()}"
    first = api.post("/v1/tasks", json={"title": "once"}, headers={"Idempotency-Key": key})
    again = api.post("/v1/tasks", json={"title": "once"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert api.post("/v1/tasks", json={"title": "other"}, headers={"Idempotency-Key": key}).status_code == 422
    # only this test's record: the stack database keeps records of earlier runs until they expire
    state_key = "tasks-api||" + idempotency_state_key(api.user, key)  # type: ignore[attr-defined]
    with db.connect() as conn:
        rows = conn.execute(text("SELECT expires_at - now() FROM dapr_state WHERE key = :k"), {"k": state_key})
        ttls = [r[0] for r in rows]
    assert len(ttls) == 1 and timedelta(hours=23) < ttls[0] <= timedelta(hours=24)


def test_concurrent_duplicates_with_one_idempotency_key_create_one_task(api: httpx.Client) -> None:
    """first-write concurrency on the real state.postgresql: racing retries create one task."""
    from concurrent.futures import ThreadPoolExecutor

    key = f"race-{uuid.uuid4()}"

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, headers=dict(api.headers), timeout=30) as c:
            return c.post("/v1/tasks", json={"title": "race"}, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    assert {r.status_code for r in answers} <= {201, 409}
    created = {r.json()["id"] for r in answers if r.status_code == 201}
    assert len(created) == 1
    titles = [t["title"] for t in api.get("/v1/tasks?q=race").json()["items"]]
    assert titles == ["race"]


def test_secrets_come_from_the_secret_store_not_the_functions_environment(stack: Any, api: httpx.Client) -> None:
    for app in stack.apps.values():
        environ = Path(f"/proc/{app.app.popen.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0] for e in environ}
        assert b"TASKFLOW_DATABASE_URL" not in names and b"TASKFLOW_JWT_SECRET" not in names
    # and yet the API verifies tokens signed with the store's secret and reaches the database
    assert api.get("/v1/tasks").status_code == 200
    forged = httpx.get(
        f"{api.base_url}/v1/tasks",
        headers={
            "Authorization": "Bearer "
            + __import__("jwt").encode(
                {"sub": "x", "exp": int(time.time()) + 60}, "not-the-secret-" + "x" * 20, algorithm="HS256"
            )
        },
    )
    assert forged.status_code == 401


def test_event_and_cron_routes_refuse_callers_without_the_sidecars_token(stack: Any) -> None:
    for app_id, path in (
        ("event-fanout", "/cron"),
        ("reminder-dispatch", "/cron"),
        ("audit", "/events/task-events"),
        ("notifier", "/events/reminders"),
        ("recurrence", "/events/task-completed"),
    ):
        resp = httpx.post(
            stack.apps[app_id].app_url + path, content=b"{}", headers={"content-type": "application/cloudevents+json"}
        )
        assert resp.status_code == 401, app_id
    ok = httpx.post(stack.apps["event-fanout"].app_url + "/cron", headers={"dapr-api-token": stack.app_api_token})
    assert ok.status_code == 200


def test_a_poison_event_ends_on_the_dead_letter_topic(stack: Any) -> None:
    import kafka_node

    poison_id = f"poison-{uuid.uuid4()}"
    event = {
        "specversion": "1.0",
        "id": poison_id,
        "type": "com.taskflow.task.created.v1",
        "source": "/e2e",
        "datacontenttype": "application/json",
        "data": {"not": "a task"},
    }
    resp = httpx.post(
        f"{stack.apps['tasks-api'].dapr_http_url}/v1.0/publish/taskflow-pubsub/task-events",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert resp.status_code == 204

    def dead() -> bool:
        return any(poison_id in r["value"] for r in kafka_node.consume("task-events-dlq", timeout=5))

    assert eventually(dead, timeout=60, interval=2)


def as_superuser(stack: Any, *statements: str) -> None:
    """Statements, each committed before the next, as PostgreSQL's superuser on the stack's cluster."""
    import shlex
    import subprocess

    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-p", str(stack.pg_port)]
    cmd += [arg for sql in statements for arg in ("-c", sql)]
    if os.geteuid() == 0:
        cmd = ["su", "postgres", "-c", shlex.join(cmd)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def test_events_survive_a_database_outage_through_daprs_redelivery(stack: Any, api: httpx.Client) -> None:
    """Fault injection: the database goes away; audit answers non-2xx; Dapr retries; the row lands once."""
    task = api.post("/v1/tasks", json={"title": "outage"}).json()
    eventually(lambda: history_types(api, task["id"]) == ["created"])
    event_id = str(uuid.uuid4())
    now = iso(datetime.now(UTC))
    event = {
        "specversion": "1.0",
        "id": event_id,
        "type": "com.taskflow.task.updated.v1",
        "source": "/e2e",
        "subject": task["id"],
        "datacontenttype": "application/json",
        "data": {"task": {**task, "updated_at": now}, "actor": "e2e", "changes": {"title": ["outage", "after"]}},
    }
    # the outage is this stack's database only (every connection cut, new ones refused): the host's
    # PostgreSQL and whatever else it serves keep running
    as_superuser(
        stack,
        f"ALTER DATABASE {stack.database} WITH ALLOW_CONNECTIONS false",
        f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{stack.database}'",
    )
    try:
        resp = httpx.post(
            f"{stack.apps['tasks-api'].dapr_http_url}/v1.0/publish/taskflow-pubsub/task-events",
            content=json.dumps(event),
            params={"metadata.partitionKey": task["id"]},
            headers={"content-type": "application/cloudevents+json"},
        )
        assert resp.status_code == 204
        time.sleep(4)  # audit fails and answers RETRY while the database is down
    finally:
        as_superuser(stack, f"ALTER DATABASE {stack.database} WITH ALLOW_CONNECTIONS true")
    assert eventually(lambda: history_types(api, task["id"]) == ["created", "updated"], timeout=90)
    audit_log = (stack.apps["audit"].app.log).read_text(errors="replace")
    assert f"RETRY {event_id}" in audit_log


def test_tasks_api_serves_the_web_app_in_the_stack(stack: Any) -> None:
    """The same page and assets as in embedded mode, from tasks-api behind its sidecar's secrets."""
    page = httpx.get(f"{stack.api_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    found = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
    assert found, page.text
    script = httpx.get(stack.api_url + found.group(1), headers={"Accept-Encoding": "gzip"})
    assert script.status_code == 200 and script.headers["content-encoding"] == "gzip"
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    # a real secret (from the secret store) signs tokens here: no development sign-in
    assert httpx.get(f"{stack.api_url}/v1/auth/options").json() == {"dev_token": False, "oidc": None}
    assert httpx.post(f"{stack.api_url}/v1/auth/dev-token", json={"user": "mallory"}).status_code == 403


# --- monitoring ------------------------------------------------------------------------------


def test_one_traceparent_is_followed_through_both_sidecars_and_kafka_into_audit(stack: Any, api: httpx.Client) -> None:
    """A known traceparent: the collector's files then hold spans of that trace from tasks-api, its
    daprd, audit and audit's daprd, and audit's log line for the event carries the trace id."""
    import otelcol

    trace_id = secrets.token_hex(16)
    resp = api.post(
        "/v1/tasks", json={"title": "traced"}, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert resp.status_code == 201
    assert resp.headers["traceresponse"].split("-")[1] == trace_id
    traces = stack.telemetry_dir / otelcol.TRACES_FILE

    want = {("tasks-api", "app"), ("tasks-api", "daprd"), ("audit", "app"), ("audit", "daprd")}

    def sources() -> set[tuple[str, str]] | None:
        """(service.name, 'app' or 'daprd') of every span of the trace."""
        found = {
            (s["service"], "app" if s["scope"].startswith(("taskflow", "opentelemetry")) else "daprd")
            for s in otelcol.spans(traces)
            if s["traceId"] == trace_id
        }
        return found if want <= found else None

    eventually(sources, timeout=60)

    def audit_line() -> dict[str, Any] | None:
        log = stack.apps["audit"].app.log.read_text(errors="replace")
        lines = [json.loads(x) for x in log.splitlines() if x.startswith("{") and trace_id in x]
        settled = [x for x in lines if x.get("event_type") == "com.taskflow.task.created.v1"]
        return settled[0] if settled else None

    line = eventually(audit_line)
    assert line["trace_id"] == trace_id and line["app"] == "audit" and line["outcome"] == "success"
    assert line["level"] == "INFO" and line["event_id"] and "traced" not in json.dumps(line)


def test_each_function_serves_its_metrics_on_the_topology_port(stack: Any, api: httpx.Client) -> None:
    api.post("/v1/tasks", json={"title": "counted"})
    port = stack.app_metrics_base  # tasks-api is the first function
    text = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    assert (
        'http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="201",http_route="/v1/tasks"}'
        in text
    )
    collector = f"http://127.0.0.1:{stack.collector_prometheus_port}/metrics"

    def pushed() -> bool:
        return 'job="tasks-api"' in httpx.get(collector, timeout=5).text

    eventually(pushed, timeout=30)


# --- data out: exports through daprd's S3 binding into moto, checked with boto3 -------------


def _aws(stack: Any, service: str) -> Any:
    import moto_node

    return moto_node.client(service, stack.moto_port, stack.aws)


def _ready_export(api: httpx.Client, fmt: str) -> dict[str, Any]:
    resp = api.post("/v1/exports", json={"format": fmt})
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    return dict(eventually(lambda: (b := api.get(location).json()).get("status") == "ready" and b, timeout=60))


def test_the_functions_secrets_come_from_aws_secrets_manager_through_daprd(stack: Any, api: httpx.Client) -> None:
    """What boto3 reads from moto's Secrets Manager is what every sidecar's secret store serves, and
    the functions work with it: tokens signed with that jwt-secret are accepted, the database-url
    reaches PostgreSQL, the S3 keys write an export."""
    if stack.secret_store != "aws":
        pytest.skip("TASKFLOW_E2E_SECRET_STORE=file")
    sm = _aws(stack, "secretsmanager")
    put = {
        key: sm.get_secret_value(SecretId=key)["SecretString"]
        for key in ("database-url", "pg-connection-string", "jwt-secret", "webhook-signing-key", "s3-secret-key")
    }
    assert put["jwt-secret"] == JWT_SECRET
    probe = f"e2e-probe-{uuid.uuid4().hex[:8]}"  # created after daprd started: read live, not from a copy
    sm.create_secret(Name=probe, SecretString="from moto")
    for app in stack.apps.values():
        meta = httpx.get(f"{app.dapr_http_url}/v1.0/metadata", timeout=10).json()
        stores = {c["name"]: c["type"] for c in meta["components"] if c["type"].startswith("secretstores.")}
        assert stores == {"taskflow-secrets": "secretstores.aws.secretmanager"}, app.app_id
        got = httpx.get(f"{app.dapr_http_url}/v1.0/secrets/taskflow-secrets/{probe}", timeout=10)
        assert got.json() == {probe: "from moto"}
    sidecar = stack.apps["tasks-api"].dapr_http_url
    for key, value in put.items():
        assert httpx.get(f"{sidecar}/v1.0/secrets/taskflow-secrets/{key}", timeout=10).json() == {key: value}
    # the functions read these through their sidecars (none is in their environment, checked above)
    task = api.post("/v1/tasks", json={"title": "secrets from Secrets Manager"})
    assert task.status_code == 201
    assert _ready_export(api, "json")["status"] == "ready"
    with user_client(stack.api_url, put["jwt-secret"], timeout=30) as signed_with_boto3s_value:
        assert signed_with_boto3s_value.get("/v1/tasks").status_code == 200


def test_an_export_lands_in_s3_and_downloads_through_a_presigned_url(stack: Any, api: httpx.Client) -> None:
    api.post("/v1/tasks", json={"title": "exported through daprd", "due_at": "2030-01-01T09:00:00Z"})
    done = _ready_export(api, "ics")
    url = done["download_url"]
    assert url.startswith(f"http://127.0.0.1:{stack.moto_port}/") and "X-Amz-Signature=" in url
    body = httpx.get(url, timeout=30)
    assert body.status_code == 200
    assert b"SUMMARY:exported through daprd" in body.content
    s3 = _aws(stack, "s3")
    prefix = "exports/" + hashlib.sha256(api.user.encode()).hexdigest()[:32] + "/"  # type: ignore[attr-defined]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="taskflow-objects", Prefix=prefix).get("Contents", [])]
    assert keys == [f"{prefix}{done['id']}/taskflow-tasks.ics"]
    stored = s3.get_object(Bucket="taskflow-objects", Key=keys[0])
    assert stored["Body"].read() == body.content
    assert stored["ContentType"].startswith("text/calendar")
    with user_client(stack.api_url, JWT_SECRET, timeout=30) as other:
        assert other.get(f"/v1/exports/{done['id']}").status_code == 404


def test_the_s3_bindings_list_sees_what_boto3_wrote(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The housekeeping's orphan sweep lists export objects through daprd's bindings.aws.s3 ``list``
    (ListObjects as JSON): the adapter reads keys and times as boto3 sees them in moto."""
    from dapr.conf import settings as sdk_settings

    from taskflow.adapters.dapr import Sidecar
    from taskflow.adapters.dapr_objects import DaprObjectStore

    import moto_node

    # the SDK waits for the sidecar's HTTP health endpoint (DAPR_HTTP_PORT) before its first call
    monkeypatch.setattr(sdk_settings, "DAPR_HTTP_PORT", stack.apps["exports"].dapr_http_port)

    s3 = _aws(stack, "s3")
    prefix = f"exports/{uuid.uuid4().hex}/"
    keys = [f"{prefix}{name}/taskflow-tasks.ics" for name in ("a", "b", "c")]
    for key in keys:
        s3.put_object(Bucket=moto_node.BUCKET, Key=key, Body=b"BEGIN:VCALENDAR")
    sidecar = Sidecar(f"127.0.0.1:{stack.apps['exports'].dapr_grpc_port}")
    try:
        store = DaprObjectStore(sidecar, "taskflow-objects")
        listed = store.list(prefix, "", 2)
        assert [o.key for o in listed] == keys[:2]
        assert store.list(prefix, listed[-1].key, 10)[0].key == keys[2]
        head = s3.head_object(Bucket=moto_node.BUCKET, Key=keys[0])
        assert abs((listed[0].modified - head["LastModified"]).total_seconds()) < 1
        store.delete(keys[0])
        assert [o.key for o in store.list(prefix, "", 10)] == keys[1:]
    finally:
        sidecar.close()
        for key in keys:
            s3.delete_object(Bucket=moto_node.BUCKET, Key=key)


def test_a_json_export_round_trips_through_import_in_the_stack(stack: Any, api: httpx.Client) -> None:
    api.post("/v1/tasks", json={"title": "json export", "tags": ["e2e"]})
    done = _ready_export(api, "json")
    doc = httpx.get(done["download_url"], timeout=30).json()
    assert [t["title"] for t in doc["tasks"]] == ["json export"]
    assert eventually(lambda: history_types(api, doc["tasks"][0]["id"]) == ["created"])
    ics = httpx.get(_ready_export(api, "ics")["download_url"], timeout=30).content
    with user_client(stack.api_url, JWT_SECRET, timeout=30) as other:
        first = other.post("/v1/imports", content=ics, headers={"Content-Type": "text/calendar"}).json()
        again = other.post("/v1/imports", content=ics, headers={"Content-Type": "text/calendar"}).json()
        assert (first["created"], again["created"], again["unchanged"]) == (1, 0, 1)
        assert [t["tags"] for t in other.get("/v1/tasks").json()["items"]] == [["e2e"]]


def test_the_s3_bindings_keys_come_from_the_secret_store_not_the_functions_environment(stack: Any) -> None:
    """daprd resolves the binding's keys (secretKeyRef) from the secret store; no function sees them."""
    secrets_file = json.loads(stack.secrets_file.read_text())
    assert secrets_file["s3-secret-key"] == stack.aws.secret_key
    for app in stack.apps.values():
        environ = Path(f"/proc/{app.app.popen.pid}/environ").read_bytes()
        assert stack.aws.secret_key.encode() not in environ
    sidecar = stack.apps["exports"].dapr_http_url
    meta = httpx.get(f"{sidecar}/v1.0/metadata", timeout=10).json()
    assert {"name": "taskflow-objects", "type": "bindings.aws.s3"}.items() <= next(
        c for c in meta["components"] if c["name"] == "taskflow-objects"
    ).items()


def test_the_audit_archive_moves_old_rows_to_s3_and_a_moto_outage_loses_and_duplicates_nothing(
    stack: Any, api: httpx.Client, db: Any
) -> None:
    """Through the exports function's cron route, its daprd's S3 binding and moto; checked with boto3."""
    import socket

    from taskflow.service_layer import archive

    import moto_node

    db.dispose()  # an earlier test restarted PostgreSQL: drop pooled connections from before
    tasks = [api.post("/v1/tasks", json={"title": f"archived {i}"}).json()["id"] for i in range(3)]
    for t in tasks:
        api.post(f"/v1/tasks/{t}/complete")
    user = api.user  # type: ignore[attr-defined]

    def audit_ids() -> set[str]:
        with db.connect() as conn:
            q = text("SELECT event_id FROM audit_log WHERE owner_id = :o")
            return set(conn.execute(q, {"o": user}).scalars())

    everything = eventually(lambda: (ids := audit_ids()) and len(ids) == 6 and ids)
    with db.begin() as conn:  # these rows are 200 days old now; nothing else in this database is
        conn.execute(text("UPDATE audit_log SET time = time - interval '200 days' WHERE owner_id = :o"), {"o": user})

    def configure(batch: int, max_objects: int) -> None:
        with db.begin() as conn:
            conn.execute(
                text("DELETE FROM taskflow_config WHERE key IN ('audit_archive_batch', 'audit_archive_max_objects')")
            )
            conn.execute(
                text(
                    "INSERT INTO taskflow_config (key, value, version) VALUES ('audit_archive_batch', :b, '1'), "
                    "('audit_archive_max_objects', :m, '1')"
                ),
                {"b": str(batch), "m": str(max_objects)},
            )
        time.sleep(3)  # the configuration subscription delivers the change

    def tick() -> httpx.Response:
        headers = {"dapr-api-token": stack.app_api_token, "content-type": "application/json"}
        return httpx.post(f"{stack.apps['exports'].app_url}{archive.CRON_ROUTE}", headers=headers, timeout=120)

    def manifest() -> list[dict[str, Any]]:
        with db.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_archive ORDER BY created_at"))]

    s3 = _aws(stack, "s3")

    def checked_rows(entry: dict[str, Any]) -> list[str]:
        body = s3.get_object(Bucket=moto_node.BUCKET, Key=entry["object_key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        rows = archive.decode(body)
        assert len(rows) == entry["rows"]
        return [r["event_id"] for r in rows]

    try:
        configure(batch=2, max_objects=1)
        first = tick()
        assert first.status_code == 200, first.text
        assert first.json()["archived_rows"] == 2
        [one] = manifest()
        assert one["object_key"].startswith("audit/") and one["object_key"].endswith(".jsonl.gz")
        archived = checked_rows(one)  # read now: moto keeps objects in memory only
        assert audit_ids() == everything - set(archived)

        # moto goes down (and its port refuses to serve) while the next run has four rows to move
        configure(batch=2, max_objects=3)

        def sidecar_restarts() -> dict[str, int]:
            return {n: c for n, c in stack.supervisor.restarts.items() if n.endswith("-daprd")}

        sidecars_before = sidecar_restarts()
        moto = stack.processes()["moto"]
        moto.popen.kill()
        moto.popen.wait(10)
        hold = socket.socket()
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind(("127.0.0.1", stack.moto_port))
        hold.listen(16)
        stop = threading.Event()

        def refuse() -> None:
            hold.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = hold.accept()
                    conn.close()
                except OSError:
                    continue

        threading.Thread(target=refuse, daemon=True).start()
        try:
            failed = tick()
            assert failed.status_code >= 500
            assert audit_ids() == everything - set(archived)  # nothing deleted
            assert len(manifest()) == 1  # nothing recorded
        finally:
            stop.set()
            hold.close()

        # the supervisor brings moto back (empty: the bucket and the secrets are created again)
        def moto_back() -> bool:
            try:
                return moto_node.BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
            except Exception:
                return False

        eventually(moto_back, timeout=90)
        done = eventually(lambda: (r := tick()).status_code == 200 and r.json(), timeout=60)
        assert done["archived_rows"] == 4
        later = manifest()[1:]
        archived += [e for entry in later for e in checked_rows(entry)]
        assert sorted(archived) == sorted(everything)  # every row exactly once
        assert audit_ids() == set()
        # no sidecar went down with its secret store (daprd 1.18's hot reloading re-resolved every
        # component's secrets each minute and exited when that failed: dapr/config.yaml turns it off)
        assert sidecar_restarts() == sidecars_before
        history = api.get(f"/v1/tasks/{tasks[0]}/history").json()
        assert history["items"] == [] and history["archived_before"]
    finally:
        with db.begin() as conn:
            conn.execute(
                text("DELETE FROM taskflow_config WHERE key IN ('audit_archive_batch', 'audit_archive_max_objects')")
            )
