"""Adapters that talk to the Dapr sidecar over its HTTP API (exercised for real by tests/e2e)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from taskflow.adapters.webhooks import frame, validate_webhook_url
from taskflow.service_layer.ports import PublishError, StateConflict


class Sidecar:
    """The sidecar's HTTP API: one pooled client per process, built on first use (cold start)."""

    def __init__(self, base_url: str, api_token: str | None) -> None:
        self.base_url = base_url
        self.api_token = api_token
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {"dapr-api-token": self.api_token} if self.api_token else {}
                self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=10.0)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None


class DaprPublisher:
    def __init__(self, sidecar: Sidecar, pubsub: str) -> None:
        self.sidecar = sidecar
        self.pubsub = pubsub

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        # Our own structured CloudEvent: Dapr keeps its id (no second envelope, no new id).
        try:
            resp = self.sidecar.client().post(
                f"/v1.0/publish/{self.pubsub}/{topic}",
                params={"metadata.partitionKey": partition_key},
                content=event_json.encode(),
                headers={"content-type": "application/cloudevents+json"},
            )
        except httpx.HTTPError as exc:
            raise PublishError(f"sidecar unreachable: {exc}") from exc
        if resp.status_code != 204:
            raise PublishError(f"publish to {topic} answered {resp.status_code}: {resp.text[:300]}")

    def publish_batch(self, topic: str, items: list[tuple[str, str, str]]) -> dict[str, str]:
        """Bulk publish (one sidecar call, one Kafka produce batch); returns {event id: error}."""
        entries = [
            {
                "entryId": event_id,
                "event": json.loads(event_json),
                "contentType": "application/cloudevents+json",
                "metadata": {"partitionKey": key},
            }
            for event_id, event_json, key in items
        ]
        try:
            resp = self.sidecar.client().post(f"/v1.0-alpha1/publish/bulk/{self.pubsub}/{topic}", json=entries)
        except httpx.HTTPError as exc:
            return {event_id: f"sidecar unreachable: {exc}" for event_id, _, _ in items}
        if resp.status_code == 204:
            return {}
        try:
            failed = resp.json().get("failedEntries") or []
            errors = {str(f["entryId"]): str(f.get("error", "failed")) for f in failed}
        except (ValueError, AttributeError, KeyError, TypeError):
            errors = {}
        if not errors:  # an answer we cannot map: treat the whole batch as failed
            return {event_id: f"bulk publish answered {resp.status_code}" for event_id, _, _ in items}
        return errors


class DaprInvoker:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def invoke(self, app_id: str, method: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        resp = self.sidecar.client().get(f"/v1.0/invoke/{app_id}/method/{method.lstrip('/')}", params=query or {})
        try:
            body = resp.json()
        except ValueError:
            body = None
        return resp.status_code, body


class DaprWebhookSender:
    """Webhooks through a ``bindings.http`` output binding: its base URL plus the request's ``path``."""

    def __init__(
        self, sidecar: Sidecar, binding: str, base_url: str | None, signing_key: Callable[[], str], allow_loopback: bool
    ) -> None:
        self.sidecar = sidecar
        self.binding = binding
        self.base_url = (base_url or "").rstrip("/")
        self.signing_key = signing_key  # resolved on first send (a secret)
        self.allow_loopback = allow_loopback

    def check(self, url: str) -> None:
        validate_webhook_url(url, self.allow_loopback)
        if self.base_url and not url.startswith(self.base_url):
            raise ValueError(f"webhook_url must start with {self.base_url} (the webhook binding's base URL)")

    def send(self, url: str, payload: dict[str, Any], event_id: str) -> int:
        if not self.base_url or not url.startswith(self.base_url):
            raise ValueError("webhook URL is outside the binding's base URL (TASKFLOW_WEBHOOK_BASE_URL)")
        body, headers = frame(payload, event_id, self.signing_key())
        metadata = {"path": url[len(self.base_url) :] or "/", "errorIfNot2XX": "false", **headers}
        resp = self.sidecar.client().post(
            f"/v1.0/bindings/{self.binding}",
            json={"operation": "post", "data": json.loads(body), "metadata": metadata},
        )
        if resp.status_code >= 300:
            return 502
        code = resp.headers.get("metadata.statuscode") or resp.headers.get("Metadata.statuscode")
        return int(code) if code else 200


class DaprState:
    def __init__(self, sidecar: Sidecar, store: str) -> None:
        self.sidecar = sidecar
        self.store = store

    def get(self, key: str) -> tuple[str | None, str | None]:
        resp = self.sidecar.client().get(f"/v1.0/state/{self.store}/{urllib.parse.quote(key, safe='')}")
        if resp.status_code == 204 or not resp.content:
            return None, None
        resp.raise_for_status()
        value = resp.json()
        return (value if isinstance(value, str) else json.dumps(value)), resp.headers.get("etag")

    def save(
        self,
        key: str,
        value: str,
        *,
        etag: str | None = None,
        ttl_seconds: int | None = None,
        first_write: bool = False,
    ) -> None:
        item: dict[str, Any] = {"key": key, "value": value}
        if etag:
            item["etag"] = etag
        if first_write:
            item["options"] = {"concurrency": "first-write"}
        if ttl_seconds:
            item["metadata"] = {"ttlInSeconds": str(ttl_seconds)}
        resp = self.sidecar.client().post(f"/v1.0/state/{self.store}", json=[item])
        if resp.status_code == 409 or (resp.status_code >= 400 and "etag" in resp.text.lower()):
            raise StateConflict(resp.text[:300])
        # state.postgresql v2 answers a lost first-write race (no ETag given) with a plain error,
        # "no item was updated" (components-contrib state/postgresql/v2), which daprd returns as 500.
        if first_write and resp.status_code == 500 and "no item was updated" in resp.text:
            raise StateConflict(resp.text[:300])
        resp.raise_for_status()

    def delete(self, key: str) -> None:
        self.sidecar.client().delete(f"/v1.0/state/{self.store}/{urllib.parse.quote(key, safe='')}").raise_for_status()


class DaprConfig:
    """Configuration items; changes are pushed by the sidecar to ``POST /configuration/<store>/<key>``."""

    def __init__(self, sidecar: Sidecar, store: str) -> None:
        self.sidecar = sidecar
        self.store = store

    def get(self, keys: list[str]) -> dict[str, str]:
        resp = self.sidecar.client().get(f"/v1.0/configuration/{self.store}", params=[("key", k) for k in keys])
        resp.raise_for_status()
        items = resp.json() or {}
        return {k: str(v.get("value")) for k, v in items.items() if isinstance(v, dict)}

    def subscribe(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> None:
        # Over HTTP the sidecar pushes changes to the app's /configuration route, which hands them
        # to the same live settings; on_change is for adapters that stream them (gRPC).
        resp = self.sidecar.client().get(
            f"/v1.0/configuration/{self.store}/subscribe", params=[("key", k) for k in keys]
        )
        resp.raise_for_status()


class DaprSecrets:
    def __init__(self, sidecar: Sidecar, store: str, secret_name: str | None) -> None:
        self.sidecar = sidecar
        self.store = store
        self.secret_name = secret_name

    def get(self, key: str) -> str | None:
        # A local.file store answers per key; the kubernetes store answers per Secret object, so
        # with TASKFLOW_SECRET_NAME set we read that Secret and pick the key from it.
        name = self.secret_name or key
        resp = self.sidecar.client().get(f"/v1.0/secrets/{self.store}/{name}")
        if resp.status_code == 204:
            return None
        resp.raise_for_status()
        value = resp.json().get(key)
        return str(value) if value is not None else None
