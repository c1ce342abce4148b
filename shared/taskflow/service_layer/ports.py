"""The ports the service layer needs: one small Protocol per Dapr building block, plus the clock.

Embedded mode (``adapters.inprocess``) and the Dapr sidecar (``adapters.dapr``) implement each;
``taskflow.bootstrap`` picks the implementations for a mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Clock = Callable[[], datetime]
"""Now, as an aware UTC datetime."""


class PublishError(RuntimeError):
    """The event was not accepted; it stays pending in the outbox."""


class StateConflict(RuntimeError):
    """A state write lost an optimistic-concurrency race (stale ETag or first-write)."""


class Publisher(Protocol):
    """Pub/sub: publish one structured CloudEvent (the id inside it is kept as is). A publisher may
    also offer ``publish_batch(topic, [(event id, event json, partition key)]) -> {event id: error}``
    (one call for many events), which the outbox relay uses when present."""

    def publish(self, topic: str, event_json: str, partition_key: str) -> None: ...


class Invoker(Protocol):
    """Service invocation: call a method on another function, answer (status, JSON body)."""

    def invoke(self, app_id: str, method: str, query: dict[str, str] | None = None) -> tuple[int, Any]: ...


class WebhookSender(Protocol):
    """Signed webhook delivery (an HTTP output binding): the URL policy and the POST itself."""

    def check(self, url: str) -> None:
        """Raise ValueError saying why ``url`` may not receive webhooks."""

    def send(self, url: str, payload: dict[str, Any], event_id: str) -> int:
        """POST ``payload`` signed; return the receiver's status (raise on a network error)."""


class StateStore(Protocol):
    """Key/value state with ETags and TTL."""

    def get(self, key: str) -> tuple[str | None, str | None]: ...

    def save(
        self,
        key: str,
        value: str,
        *,
        etag: str | None = None,
        ttl_seconds: int | None = None,
        first_write: bool = False,
    ) -> None: ...

    def delete(self, key: str) -> None: ...


class ConfigStore(Protocol):
    """Live configuration items (key -> value), with change notifications."""

    def get(self, keys: list[str]) -> dict[str, str]: ...

    def subscribe(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> bool:
        """Call ``on_change`` with the changed items whenever the store changes; False when this
        store cannot notify changes (then it must be read again to see them)."""


class SecretStore(Protocol):
    """Secrets by name (the Dapr secret store, or the environment)."""

    def get(self, key: str) -> str | None: ...


@dataclass(frozen=True)
class StoredObject:
    """One object of a listing: its key and when it was last written (aware UTC)."""

    key: str
    modified: datetime


class ObjectStore(Protocol):
    """Objects by key (a Dapr output binding: a local folder embedded, ``bindings.aws.s3`` elsewhere)."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes; raise ``KeyError`` when there is none."""

    def delete(self, key: str) -> None:
        """Remove the object (absent is fine)."""

    def download_url(self, key: str, filename: str, ttl_seconds: int) -> str:
        """A URL that downloads the object without other credentials, valid for ``ttl_seconds``."""

    def list(self, prefix: str, after: str, limit: int) -> list[StoredObject]:
        """Up to ``limit`` objects whose key starts with ``prefix`` and sorts after ``after``, in key order."""
