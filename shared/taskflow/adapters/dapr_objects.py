"""The object store through a Dapr output binding (``bindings.aws.s3``: S3, DigitalOcean Spaces,
MinIO, GCS interop, moto): ``create``, ``get``, ``delete`` and ``presign`` by key."""

from __future__ import annotations

import json
from typing import Any

from taskflow.adapters.dapr import Sidecar


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
