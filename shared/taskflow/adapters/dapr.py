"""Adapters that talk to the Dapr sidecar through the Dapr Python SDK (exercised for real by tests/e2e).

The SDK (gRPC, protobuf) is imported on the first call that needs the sidecar, never at import
time, so a function's cold start does not pay for it before it must; and only its gRPC client
(see ``grpc_sdk``), not the HTTP/actor clients its package imports with it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from taskflow.adapters.webhooks import frame, validate_webhook_url
from taskflow.domain.limits import OUTGOING_TIMEOUT
from taskflow.service_layer.ports import PublishError, StateConflict

log = logging.getLogger("taskflow.dapr")
CLOUDEVENT = "application/cloudevents+json"


def grpc_sdk() -> ModuleType:
    """The SDK's gRPC client module (``dapr.clients.grpc.client``), imported without running
    ``dapr/clients/__init__.py`` first.

    That package file imports the SDK's HTTP actor and invocation clients, and with them aiohttp:
    more than half of the SDK's import time, for clients TaskFlow never uses (every call here goes
    through ``DaprGrpcClient``). So the package is registered un-run, and it runs in full the first
    time anything asks it for a name (``from dapr.clients import DaprClient`` still works).
    """
    if "dapr.clients" not in sys.modules:
        spec = importlib.util.find_spec("dapr.clients")
        if spec is not None and spec.loader is not None and spec.submodule_search_locations is not None:
            package = importlib.util.module_from_spec(spec)
            loader = spec.loader

            def complete(name: str) -> Any:
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
                return getattr(package, name)

            package.__getattr__ = complete  # type: ignore[method-assign]
            sys.modules["dapr.clients"] = package
            import dapr

            dapr.clients = package  # type: ignore[attr-defined]  # as the import system does for a submodule
    from dapr.clients.grpc import client

    return client


class Sidecar:
    """One SDK client per process (gRPC channel to the sidecar), built on first use."""

    def __init__(self, grpc_address: str, interceptors: Callable[[], list[Any]] | None = None) -> None:
        self.grpc_address = grpc_address
        self.interceptors = interceptors  # e.g. OpenTelemetry's: a span and traceparent per sidecar call
        self._client: Any = None
        self._lock = threading.Lock()
        self.closed = threading.Event()  # set by close(): background readers stop

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                sdk_module = grpc_sdk()
                from dapr.conf import settings as sdk_settings

                # The API token (DAPR_API_TOKEN) and the health wait come from the SDK's settings.
                # The SDK sets no deadline on a call unless DAPR_API_TIMEOUT_SECONDS is set: a hung
                # sidecar would hang the request, so every call gets ours unless the operator chose one.
                sdk: Any = sdk_settings
                if sdk.DAPR_API_TIMEOUT_SECONDS is None:
                    sdk.DAPR_API_TIMEOUT_SECONDS = OUTGOING_TIMEOUT.max
                extra = self.interceptors() if self.interceptors is not None else []
                self._client = sdk_module.DaprGrpcClient(address=self.grpc_address, interceptors=extra or None)
            return self._client

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    return str(details() if callable(details) else exc)


class DaprPublisher:
    def __init__(self, sidecar: Sidecar, pubsub: str) -> None:
        self.sidecar = sidecar
        self.pubsub = pubsub

    def publish(self, topic: str, event_json: str, partition_key: str) -> None:
        # Our own structured CloudEvent: Dapr keeps its id (no second envelope, no new id).
        try:
            self.sidecar.client().publish_event(
                self.pubsub,
                topic,
                event_json,
                publish_metadata={"partitionKey": partition_key},
                data_content_type=CLOUDEVENT,
            )
        except Exception as exc:  # sidecar unreachable or the broker refused: the outbox keeps it
            raise PublishError(f"publish to {topic} failed: {_details(exc)[:300]}") from exc

    def publish_batch(self, topic: str, items: list[tuple[str, str, str]]) -> dict[str, str]:
        """Bulk publish (one sidecar call, one Kafka produce batch); returns {event id: error}."""
        from dapr.clients.grpc._request import BulkPublishEntry  # what `dapr.clients` re-exports

        entries = [
            BulkPublishEntry(event=event_json, metadata={"partitionKey": key}, content_type=CLOUDEVENT, entry_id=eid)
            for eid, event_json, key in items
        ]
        try:
            resp = self.sidecar.client().publish_events(self.pubsub, topic, entries)
        except Exception as exc:
            return {event_id: f"bulk publish failed: {_details(exc)[:300]}" for event_id, _, _ in items}
        return {str(f.entry_id): str(f.error or "failed") for f in resp.failed_entries}


class DaprInvoker:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def invoke(self, app_id: str, method: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        """GET ``method`` on ``app_id``; a non-2xx answer of the callee arrives as an SDK error."""
        resp = self.sidecar.client().invoke_method(
            app_id, method.lstrip("/"), b"", http_verb="GET", http_querystring=tuple((query or {}).items())
        )
        try:
            return 200, json.loads(resp.data) if resp.data else None
        except ValueError:
            return 200, None


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
        try:
            resp = self.sidecar.client().invoke_binding(self.binding, "post", body, binding_metadata=metadata)
        except Exception as exc:
            log.warning("webhook binding failed: %s", _details(exc)[:300])
            return 502
        status = {k.lower(): v for k, v in resp.binding_metadata.items()}.get("statuscode")
        return int(status) if status else 200


class DaprState:
    def __init__(self, sidecar: Sidecar, store: str) -> None:
        self.sidecar = sidecar
        self.store = store

    def get(self, key: str) -> tuple[str | None, str | None]:
        resp = self.sidecar.client().get_state(self.store, key)
        if not resp.data:
            return None, None
        value = resp.data.decode()
        if value.startswith('"'):  # written by the HTTP API (a JSON string) before the SDK was used
            value = json.loads(value)
        return value, resp.etag or None

    def save(
        self,
        key: str,
        value: str,
        *,
        etag: str | None = None,
        ttl_seconds: int | None = None,
        first_write: bool = False,
    ) -> None:
        from dapr.clients.grpc._state import Concurrency, StateOptions

        options = StateOptions(concurrency=Concurrency.first_write) if first_write else None
        metadata = {"ttlInSeconds": str(ttl_seconds)} if ttl_seconds else {}
        try:
            self.sidecar.client().save_state(
                self.store, key, value, etag=etag, options=options, state_metadata=metadata
            )
        except Exception as exc:
            text = _details(exc)
            # A stale ETag is "possible etag mismatch"; state.postgresql v2 answers a lost first-write
            # race (no ETag given) with a plain "no item was updated" (components-contrib state/postgresql/v2).
            if "etag" in text.lower() or (first_write and "no item was updated" in text):
                raise StateConflict(text[:300]) from exc
            raise

    def delete(self, key: str) -> None:
        self.sidecar.client().delete_state(self.store, key)


class DaprConfig:
    """Configuration items, and their changes streamed by the sidecar (gRPC subscription).

    The subscription is re-established with backoff whenever its stream ends: daprd restarting (a
    crash, a new pod's sidecar, a rollout) ends it, and without a new subscription live settings
    would silently stop changing. The SDK's ``subscribe_configuration`` reads the stream in a thread
    that ends quietly and never resubscribes (``ConfigurationWatcher._read_subscribe_config``), so
    this reads the same stream through the SDK's generated stub and request type in a thread of its
    own (hand-written: the SDK has no call for a subscription that survives its sidecar).
    """

    RETRY_FIRST = 0.5
    RETRY_MAX = 15.0

    def __init__(self, sidecar: Sidecar, store: str) -> None:
        self.sidecar = sidecar
        self.store = store
        self.subscriptions = 0  # streams established so far (1 + resubscriptions)

    def get(self, keys: list[str]) -> dict[str, str]:
        resp = self.sidecar.client().get_configuration(self.store, keys)
        return {k: str(item.value) for k, item in resp.items.items()}

    def subscribe(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> bool:
        threading.Thread(
            target=self._follow, args=(list(keys), on_change), name=f"dapr-config-{self.store}", daemon=True
        ).start()
        return True

    def _follow(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> None:
        from dapr.proto import api_v1

        delay = self.RETRY_FIRST
        while not self.sidecar.closed.is_set():
            try:
                request = api_v1.SubscribeConfigurationRequest(store_name=self.store, keys=keys)
                for resp in self.sidecar.client()._stub.SubscribeConfigurationAlpha1(request):
                    if not resp.items:  # daprd's first answer: the subscription id, no items
                        self.subscriptions += 1
                        delay = self.RETRY_FIRST
                        if self.subscriptions > 1:
                            log.info("configuration store %s: subscribed again", self.store)
                        # changes made while no stream was open were never streamed: read everything again
                        on_change({})
                        continue
                    on_change({k: str(item.value) for k, item in resp.items.items()})
                reason = "the sidecar ended the stream"
            except Exception as exc:  # daprd gone (UNAVAILABLE), restarting, or the store failing
                reason = _details(exc)[:200]
            if self.sidecar.closed.is_set():
                return
            log.warning("configuration subscription to %s lost (%s); again in %.1fs", self.store, reason, delay)
            if self.sidecar.closed.wait(delay):
                return
            delay = min(delay * 2, self.RETRY_MAX)


class DaprSecrets:
    def __init__(self, sidecar: Sidecar, store: str, secret_name: str | None) -> None:
        self.sidecar = sidecar
        self.store = store
        self.secret_name = secret_name

    def get(self, key: str) -> str | None:
        # A local.file store answers per key; the kubernetes store answers per Secret object, so
        # with TASKFLOW_SECRET_NAME set we read that Secret and pick the key from it.
        resp = self.sidecar.client().get_secret(self.store, self.secret_name or key)
        value = resp.secret.get(key)
        return str(value) if value is not None else None
