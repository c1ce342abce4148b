"""The object store through a Dapr output binding (``bindings.aws.s3``: S3, DigitalOcean Spaces,
MinIO, GCS interop, moto): ``create``, ``get``, ``delete`` and ``presign`` by key, and ``list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from taskflow.adapters.dapr import Sidecar
from taskflow.service_layer.ports import StoredObject


class DaprObjectStore:
    def __init__(self, sidecar: Sidecar, binding: str) -> None:
        self.sidecar = sidecar
        self.binding = binding

    def _invoke(self, operation: str, key: str, data: bytes = b"", **metadata: str) -> Any:
        return self.sidecar.client().invoke_binding(
            self.binding, operation, data, binding_metadata={"key": key, **metadata}
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._invoke("create", key, data, **{"Content-Type": content_type})

    def get(self, key: str) -> bytes:
        try:
            resp = self._invoke("get", key)
        except Exception as exc:
            if "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
                raise KeyError(key) from exc
            raise
        return bytes(resp.data)

    def delete(self, key: str) -> None:
        try:
            self._invoke("delete", key)
        except Exception as exc:
            if "NoSuchKey" not in str(exc):
                raise

    def download_url(self, key: str, filename: str, ttl_seconds: int) -> str:
        resp = self._invoke("presign", key, presignTTL=f"{ttl_seconds}s")
        url: str = json.loads(resp.data)["presignURL"]
        return url

    def list(self, prefix: str, after: str, limit: int) -> list[StoredObject]:
        """The binding's ``list`` answers with S3's ListObjects output as JSON (Go field names);
        ``marker`` is S3's: keys after it, in key order."""
        request = json.dumps({"prefix": prefix, "marker": after, "maxResults": limit}).encode()
        resp = self.sidecar.client().invoke_binding(self.binding, "list", request, binding_metadata={})
        listing = json.loads(resp.data or b"{}")
        return [
            StoredObject(item["Key"], _s3_time(item.get("LastModified")))
            for item in listing.get("Contents") or []
            if item.get("Key")
        ]


def _s3_time(value: str | None) -> datetime:
    """RFC 3339 from Go's time.Time; an object without one counts as written now (never swept early)."""
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
