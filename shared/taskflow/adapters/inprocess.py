"""In-process implementations of the ports, for embedded mode.

The bus reads the same declarative Subscriptions as daprd (``dapr/subscriptions.yaml``),
evaluates their routing rules, and POSTs the same structured CloudEvents to the same routes
of the same function apps, after commit, with retries and a dead-letter list, as Dapr does.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, delete, insert, select, update

from taskflow import telemetry
from taskflow.adapters.tables import kv_state, taskflow_config
from taskflow.service_layer.ports import Clock, PublishError, StateConflict

log = logging.getLogger("taskflow.bus")


# --- routing rules -------------------------------------------------------------------------

_TERM = re.compile(r'^\s*event\.(\w+)\s*(==|!=)\s*"([^"]*)"\s*$')


def _compile_rule(expr: str) -> list[list[tuple[str, str, str]]]:
    """The CEL subset our Subscriptions use: ``event.<attr> == "..."`` joined by && and ||."""
    alternatives = []
    for alt in expr.split("||"):
        terms = []
        for term in alt.split("&&"):
            m = _TERM.match(term.strip().strip("()"))
            if m is None:
                raise ValueError(f"unsupported routing rule {expr!r}")
            terms.append((m.group(1), m.group(2), m.group(3)))
        alternatives.append(terms)
    return alternatives


def _matches(rule: list[list[tuple[str, str, str]]], event: dict[str, Any]) -> bool:
    return any(all((str(event.get(attr)) == value) == (op == "==") for attr, op, value in alt) for alt in rule)


@dataclass
class Subscription:
    name: str
    app_id: str
    pubsub: str
    topic: str
    rules: list[tuple[list[list[tuple[str, str, str]]], str]]
    default: str | None
    dead_letter: str | None
    bulk_max: int = 0  # bulkSubscribe.maxMessagesCount when bulk delivery is enabled, else 0
    queue: queue.Queue[tuple[dict[str, Any], int]] = field(default_factory=queue.Queue)

    def route_for(self, event: dict[str, Any]) -> str | None:
        for rule, path in self.rules:
            if _matches(rule, event):
                return path
        return self.default


def load_subscriptions(path: Path) -> list[Subscription]:
    subs = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "Subscription":
            continue
        spec = doc["spec"]
        routes = spec.get("routes") or {}
        rules = [(_compile_rule(r["match"]), r["path"]) for r in routes.get("rules", [])]
        bulk = spec.get("bulkSubscribe") or {}
        bulk_max = int(bulk.get("maxMessagesCount") or 100) if bulk.get("enabled") else 0
        for app_id in doc.get("scopes") or []:
            subs.append(
                Subscription(
                    name=doc["metadata"]["name"],
                    app_id=app_id,
                    pubsub=spec["pubsubname"],
                    topic=spec["topic"],
                    rules=rules,
                    default=routes.get("default") or spec.get("route"),
                    dead_letter=spec.get("deadLetterTopic"),
                    bulk_max=bulk_max,
                )
            )
    return subs


class InProcessBus:
    """Pub/sub in one process: one ordered worker per subscription, Dapr's answer semantics.

    It holds events in memory only, so it acknowledges an event (``on_settled``, which marks the
    outbox row sent) once every subscription has settled it, not when it is queued: an event lost
    with the process is still pending in the outbox and the relay sends it again.
    """

    acknowledges_delivery = True

    def __init__(
        self,
        subscriptions: list[Subscription],
        deliver: Any,
        max_attempts: int = 8,
        backoff: float = 0.2,
        app_token: str | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.deliver = deliver  # (app_id, path, body, headers) -> (status, body bytes)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.app_token = app_token
        self.dead_letters: list[tuple[str, dict[str, Any]]] = []
        self.on_settled: Any = None  # (event ids) -> None, called once all subscriptions settled them
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        try:
            event = json.loads(event_json)
        except ValueError as exc:
            raise PublishError("not a JSON CloudEvent") from exc
        targets = [sub for sub in self.subscriptions if sub.topic == topic]
        event_id = str(event.get("id", ""))
        with self._inflight_lock:
            if event_id in self._inflight:
                return  # already queued: the relay saw it pending because it is not settled yet
            if targets:
                self._inflight[event_id] = len(targets)
        if not targets:
            self._settled(event_id)
        for sub in targets:
            sub.queue.put((dict(event, topic=topic, pubsubname=sub.pubsub), 0))

    def _settle_one(self, event_id: str) -> bool:
        """True when this was the last subscription to settle the event."""
        with self._inflight_lock:
            left = self._inflight.get(event_id, 0) - 1
            if left > 0:
                self._inflight[event_id] = left
                return False
            self._inflight.pop(event_id, None)
        return True

    def _settled(self, *event_ids: str) -> None:
        ids = [i for i in event_ids if i]
        if self.on_settled is not None and ids:
            try:
                self.on_settled(ids)
            except Exception:
                log.exception("could not mark %d event(s) sent; the relay will send them again", len(ids))

    def start(self) -> None:
        for sub in self.subscriptions:
            t = threading.Thread(target=self._run, args=(sub,), name=f"bus-{sub.app_id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for sub in self.subscriptions:
            sub.queue.put(({}, -1))
        for t in self._threads:
            t.join(timeout=5)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queue is empty and idle (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.queue.unfinished_tasks == 0 for s in self.subscriptions):
                return
            time.sleep(0.02)

    def _run(self, sub: Subscription) -> None:
        while not self._stop.is_set():
            batch = [sub.queue.get()[0]]
            while sub.bulk_max and len(batch) < sub.bulk_max and batch[-1]:
                try:
                    batch.append(sub.queue.get_nowait()[0])  # whatever else is queued: one delivery
                except queue.Empty:
                    break
            try:
                stop = not batch[-1]
                events = [e for e in batch if e]
                if events:
                    done = self._deliver_bulk(sub, events) if sub.bulk_max else self._deliver_each(sub, events)
                    self._settled(*[i for i in done if self._settle_one(i)])
                if stop:
                    return
            except Exception:
                log.exception("bus worker for %s failed on an event", sub.app_id)
            finally:
                for _ in batch:
                    sub.queue.task_done()

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"content-type": content_type}
        if self.app_token:
            headers["dapr-api-token"] = self.app_token
        return headers

    def _deliver_each(self, sub: Subscription, events: list[dict[str, Any]]) -> list[str]:
        done = []
        for event in events:
            if not self._deliver_with_retries(sub, event):
                break  # stopped
            done.append(str(event.get("id", "")))
        return done

    def _deliver_with_retries(self, sub: Subscription, event: dict[str, Any]) -> bool:
        """Deliver until SUCCESS, DROP or attempts run out; False only when stopped meanwhile."""
        path = sub.route_for(event)
        if path is None:
            return True  # no rule matched and no default route: Dapr skips it, as do we
        body = json.dumps(event).encode()
        headers = self._headers("application/cloudevents+json")
        for name in ("traceparent", "tracestate"):  # as daprd does: the delivery continues the event's trace
            if isinstance(event.get(name), str):
                headers[name] = event[name]
        for attempt in range(self.max_attempts):
            try:
                status, resp = self.deliver(sub.app_id, path, body, headers)
            except Exception as exc:
                log.warning("delivery of %s to %s raised %s", event.get("id"), sub.app_id, exc)
                status, resp = 500, b""
            verdict = _verdict(status, resp)
            if verdict == "SUCCESS":
                return True
            if verdict == "DROP":
                self._dead_letter(sub, event, counted=True)  # the consumer counted and logged its drop
                return True
            if self._stop.wait(min(self.backoff * 2**attempt, 5.0)):
                return False
        self._dead_letter(sub, event, counted=False)
        return True

    def _dead_letter(self, sub: Subscription, event: dict[str, Any], counted: bool) -> None:
        if not counted:
            telemetry.instruments().dead_letters.add(1, {"topic": telemetry.topic_label(sub.topic)})
        tp = str(event.get("traceparent") or "")
        log.error(
            "event %s (%s) dead-lettered for %s",
            event.get("id"),
            event.get("type"),
            sub.app_id,
            extra={"trace_id": tp[3:35], "event_id": event.get("id"), "event_type": event.get("type")},
        )
        self.dead_letters.append((sub.dead_letter or "", event))

    def _deliver_bulk(self, sub: Subscription, events: list[dict[str, Any]]) -> list[str]:
        """Dapr's bulk delivery: one POST per route with every entry, answered per entry; RETRY
        entries are sent again (in a smaller bulk) with backoff, DROP ones dead-lettered."""
        done: list[str] = []
        by_route: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            path = sub.route_for(event)
            if path is None:
                done.append(str(event.get("id", "")))
            else:
                by_route.setdefault(path, []).append(event)
        for path, pending in by_route.items():
            for attempt in range(self.max_attempts):
                entries = {str(uuid.uuid4()): e for e in pending}
                body = json.dumps(
                    {
                        "id": str(uuid.uuid4()),
                        "entries": [
                            {"entryId": k, "event": e, "contentType": "application/cloudevents+json", "metadata": {}}
                            for k, e in entries.items()
                        ],
                        "metadata": {"pubsubName": sub.pubsub},
                        "pubsubname": sub.pubsub,
                        "topic": sub.topic,
                        "type": "com.dapr.event.sent.bulk",
                    }
                ).encode()
                try:
                    status, resp = self.deliver(sub.app_id, path, body, self._headers("application/json"))
                except Exception as exc:
                    log.warning("bulk delivery of %d events to %s raised %s", len(entries), sub.app_id, exc)
                    status, resp = 500, b""
                verdicts = _bulk_verdicts(status, resp)
                pending = []
                for entry_id, event in entries.items():
                    verdict = verdicts.get(entry_id, "RETRY")  # no answer for an entry: Dapr retries it
                    if verdict == "SUCCESS":
                        done.append(str(event.get("id", "")))
                    elif verdict == "DROP":
                        self._dead_letter(sub, event, counted=True)
                        done.append(str(event.get("id", "")))
                    else:
                        pending.append(event)
                if not pending:
                    break
                if self._stop.wait(min(self.backoff * 2**attempt, 5.0)):
                    return done
            for event in pending:
                self._dead_letter(sub, event, counted=False)
                done.append(str(event.get("id", "")))
        return done


def _bulk_verdicts(status: int, body: bytes) -> dict[str, str]:
    """Dapr's reading of an app's answer to a bulk delivery: a status per entry id."""
    if not 200 <= status < 300:
        return {}
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return {}
    statuses = parsed.get("statuses") if isinstance(parsed, dict) else None
    if not isinstance(statuses, list):
        return {}
    return {
        str(s.get("entryId")): str(s.get("status", "")).upper() or "SUCCESS" for s in statuses if isinstance(s, dict)
    }


def _verdict(status: int, body: bytes) -> str:
    """Dapr's reading of an app's answer to a delivery (postman/http)."""
    if status == 404:
        return "DROP"
    if not 200 <= status < 300:
        return "RETRY"
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return "SUCCESS"
    if not isinstance(parsed, dict) or "status" not in parsed:
        return "SUCCESS"
    value = str(parsed.get("status", "")).upper()
    if value in ("SUCCESS", ""):
        return "SUCCESS"
    if value == "DROP":
        return "DROP"
    return "RETRY"


# --- other ports ---------------------------------------------------------------------------


class DirectInvoker:
    """Service invocation without a sidecar: call the target function's app directly."""

    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver  # (app_id, method, query) -> (status, body bytes)

    def invoke(self, app_id: str, method: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        status, body = self.deliver(app_id, method, query or {})
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None


class SqlState:
    """State store on the application database, with ETags and TTL (like state.postgresql v2)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def get(self, key: str) -> tuple[str | None, str | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(kv_state.c.value, kv_state.c.etag, kv_state.c.expires_at).where(kv_state.c.key == key)
            ).first()
        if row is None or (row[2] is not None and row[2] <= self.clock()):
            return None, None
        return row[0], row[1]

    def save(
        self,
        key: str,
        value: str,
        *,
        etag: str | None = None,
        ttl_seconds: int | None = None,
        first_write: bool = False,
    ) -> None:
        now = self.clock()
        expires = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
        new_etag = str(uuid.uuid4())
        with self.engine.begin() as conn:
            row = conn.execute(select(kv_state.c.etag, kv_state.c.expires_at).where(kv_state.c.key == key)).first()
            live = row is not None and (row[1] is None or row[1] > now)
            if (first_write and live) or (etag is not None and (not live or row is None or row[0] != etag)):
                raise StateConflict(f"etag mismatch for {key}")
            if row is None:
                conn.execute(insert(kv_state).values(key=key, value=value, etag=new_etag, expires_at=expires))
            else:
                conn.execute(
                    update(kv_state).where(kv_state.c.key == key).values(value=value, etag=new_etag, expires_at=expires)
                )

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(kv_state).where(kv_state.c.key == key))


class SqlConfig:
    """Configuration items from the ``taskflow_config`` table (the one configuration.postgresql reads)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, keys: list[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(taskflow_config.c.key, taskflow_config.c.value).where(taskflow_config.c.key.in_(keys))
            )
            return {r[0]: r[1] for r in rows}

    def subscribe(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> bool:
        """A plain table announces nothing here: embedded mode reads it on every tick."""
        return False


class EnvSecrets:
    """Secrets from the environment (``database-url`` from ``TASKFLOW_DATABASE_URL``, ...), else from
    ``fallback`` (the Dapr secret store in ``dapr`` mode), so that no secret needs to be in a
    function's environment there."""

    def __init__(self, environ: Any, fallback: Any = None) -> None:
        self.environ = environ
        self.fallback = fallback

    def get(self, key: str) -> str | None:
        value = self.environ.get("TASKFLOW_" + key.upper().replace("-", "_"))
        if value:
            return str(value)
        return None if self.fallback is None else self.fallback.get(key)
