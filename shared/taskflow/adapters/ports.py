"""One small port per Dapr building block. Embedded mode and the sidecar implement each."""

from __future__ import annotations

from typing import Any, Protocol


class PublishError(RuntimeError):
    """The event was not accepted; it stays pending in the outbox."""


class StateConflict(RuntimeError):
    """A state write lost an optimistic-concurrency race (stale ETag or first-write)."""


class Publisher(Protocol):
    """Pub/sub: publish one structured CloudEvent (the id inside it is kept as is)."""

    def publish(self, topic: str, event_json: str, partition_key: str) -> None: ...


class Invoker(Protocol):
    """Service invocation: call a method on another function, answer (status, JSON body)."""

    def invoke(self, app_id: str, method: str, query: dict[str, str] | None = None) -> tuple[int, Any]: ...


class OutputBinding(Protocol):
    """HTTP output binding for webhooks: POST ``body`` to ``url`` with ``headers``; return the status."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int: ...


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
    """Live configuration items (key -> value)."""

    def get(self, keys: list[str]) -> dict[str, str]: ...

    def subscribe(self, keys: list[str]) -> None:
        """Ask for pushes of changes to ``keys`` (the sidecar POSTs them to /configuration/...)."""


class SecretStore(Protocol):
    def get(self, key: str) -> str | None: ...
