"""Embedded mode's object store: a local folder (``var/exports``) standing in for the Dapr output
binding, with download URLs signed by tasks-api (HMAC over key, file name and expiry)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from taskflow.service_layer.ports import Clock, StoredObject

DOWNLOAD_PREFIX = "/v1/downloads/"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad object key {key!r}")
    return key


class LocalFolderStore:
    def __init__(self, folder: str | Path, signing_key: Callable[[], str], clock: Clock) -> None:
        self.folder = Path(folder)
        self._signing_key = signing_key
        self.clock = clock

    def _path(self, key: str) -> Path:
        return self.folder / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str, after: str, limit: int) -> list[StoredObject]:
        """Files under the folder (no ``.part-`` files of writes in progress), in key order."""
        if not self.folder.is_dir():
            return []
        keys = sorted(
            key
            for p in self.folder.rglob("*")
            if p.is_file()
            and not p.name.startswith(".part-")
            and (key := p.relative_to(self.folder).as_posix()).startswith(prefix)
            and key > after
        )[:limit]
        out = []
        for key in keys:
            try:
                mtime = (self.folder / key).stat().st_mtime
            except FileNotFoundError:
                continue
            out.append(StoredObject(key, datetime.fromtimestamp(mtime, UTC)))
        return out

    def _signature(self, key: str, filename: str, expires: int) -> str:
        message = f"{key}\n{filename}\n{expires}".encode()
        return hmac.new(self._signing_key().encode(), message, hashlib.sha256).hexdigest()

    def download_url(self, key: str, filename: str, ttl_seconds: int) -> str:
        """A path (``/v1/downloads/<key>?...``) that tasks-api serves until it expires."""
        expires = int(self.clock().timestamp()) + ttl_seconds
        query = urlencode(
            {"filename": filename, "expires": expires, "signature": self._signature(key, filename, expires)}
        )
        return DOWNLOAD_PREFIX + quote(_check_key(key)) + "?" + query

    def verify(self, key: str, filename: str, expires: str, signature: str) -> bool:
        """True when the URL was signed here and has not expired."""
        if not re.fullmatch(r"[0-9]{1,12}", expires) or int(expires) < self.clock().timestamp():
            return False
        expected = self._signature(key, filename, int(expires)).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
