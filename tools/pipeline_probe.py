"""Is the local stack's event pipeline live? Healthy sidecars are not enough: daprd answers
``/v1.0/healthz`` before its Kafka consumer group has joined and been given partitions, and the
first events then wait seconds. A probe event per subscribed topic is published through one
sidecar; the pipeline is live once every subscribing sidecar has delivered an event of that topic
to its app (daprd's ``dapr_component_pubsub_ingress_count``, or ``..._ingress_bulk_event_count`` for a
bulk subscription, moved for the topic).

The probe's type (``com.taskflow.stack.probe.v1``) is one no function records: each consumer answers
it SUCCESS after opening its database connection (``api/consumers.py``), so the first real event
does not wait for the secret, the engine and the connection either; a routing-rule subscription
that no rule matches (recurrence) is settled by daprd itself. Nothing is written anywhere.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

PROBE_TYPE = "com.taskflow.stack.probe.v1"  # answered SUCCESS, unrecorded, by shared/taskflow/api/consumers.py
PUBSUB = "taskflow-pubsub"
_INGRESS = re.compile(r"^dapr_component_pubsub_ingress(?:_bulk_event)?_count\{([^}]*)\}\s+([0-9.eE+-]+)", re.M)


def subscriptions(resources: Path) -> dict[str, set[str]]:
    """topic -> the app ids subscribed to it, from the rendered Subscription resources."""
    out: dict[str, set[str]] = {}
    for path in sorted(resources.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Subscription":
                out.setdefault(doc["spec"]["topic"], set()).update(doc.get("scopes") or [])
    return out


def ingress(metrics_url: str, topic: str) -> float:
    """Events of ``topic`` this sidecar has handed to its app, whatever the app answered."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for labels, v in _INGRESS.findall(text) if f'topic="{topic}"' in labels)


def publish(dapr_http_url: str, topic: str) -> None:
    event_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": event_id,
        "type": PROBE_TYPE,
        "source": "/taskflow/stack",
        "subject": event_id,
        "datacontenttype": "application/json",
        "data": {},
    }
    req = urllib.request.Request(
        f"{dapr_http_url}/v1.0/publish/{PUBSUB}/{topic}?metadata.partitionKey={event_id}",
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/cloudevents+json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def wait_live(
    publisher_url: str,
    metrics_urls: dict[str, str],
    resources: Path,
    timeout: float,
    log: Callable[[str], None],
) -> float:
    """Publish a probe per topic (again every few seconds) until each subscriber of each topic has
    delivered one; the seconds it took. ``metrics_urls``: app id -> its daprd's /metrics URL."""
    started = time.monotonic()
    waiting = {(topic, app) for topic, apps in subscriptions(resources).items() for app in apps if app in metrics_urls}
    before = {(topic, app): ingress(metrics_urls[app], topic) for topic, app in waiting}
    next_publish = 0.0
    while waiting:
        now = time.monotonic()
        if now >= next_publish:
            for topic in sorted({t for t, _ in waiting}):
                try:
                    publish(publisher_url, topic)
                except OSError as exc:  # the broker may still be electing partition leaders: try again
                    log(f"probe publish to {topic} failed ({exc}); retrying")
            next_publish = now + 3.0
        time.sleep(0.1)
        waiting = {(t, a) for t, a in waiting if ingress(metrics_urls[a], t) <= before[(t, a)]}
        if waiting and time.monotonic() - started > timeout:
            pending = ", ".join(f"{a} <- {t}" for t, a in sorted(waiting))
            raise TimeoutError(f"no probe event delivered after {timeout:.0f}s: {pending}")
    return time.monotonic() - started
