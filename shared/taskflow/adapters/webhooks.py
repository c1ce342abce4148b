"""Webhooks: the URL policy (https only, never an address inside our own network: SSRF), the
signed framing every sender uses, and the sender that POSTs directly (embedded mode)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


def validate_webhook_url(url: str, allow_loopback: bool) -> str:
    """Return the URL if it is safe to POST to, else raise ValueError saying why.

    The host is resolved and every address checked, so a public name that points at a
    private, loopback or link-local address is refused too. Loopback ``http://`` is accepted
    only where ``allow_loopback`` (embedded mode, local stack).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("webhook_url must be an absolute https:// URL")
    if parts.username or parts.password:
        raise ValueError("webhook_url must not contain credentials")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError("webhook_url has an invalid port") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"webhook_url host {host!r} does not resolve") from exc
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    all_loopback = all(a.is_loopback for a in addresses)
    if all_loopback and allow_loopback:
        return url
    if parts.scheme != "https":
        raise ValueError("webhook_url must use https")
    for address in addresses:
        if (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None)
        ):
            raise ValueError(f"webhook_url resolves to a non-public address ({address}); refused")
    return url


def canonical_json(value: Any) -> bytes:
    """JSON exactly as Go's encoding/json writes it: sorted keys, compact, HTML-safe escapes.

    Dapr's HTTP output binding decodes the payload and re-encodes it that way, so the signature
    must cover these bytes, the ones the receiver gets. Every sender frames the same way, so a
    receiver sees the same bytes in every mode.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def frame(payload: dict[str, Any], event_id: str, signing_key: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one signed webhook (``X-TaskFlow-Signature: sha256=<HMAC of the body>``)."""
    body = canonical_json(payload)
    signature = "sha256=" + hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-TaskFlow-Event-Id": event_id, "X-TaskFlow-Signature": signature}
    return body, headers


class DirectWebhookSender:
    """The webhook sender without a sidecar: a plain HTTP POST (embedded mode)."""

    def __init__(self, signing_key: Callable[[], str], allow_loopback: bool, timeout: float = 10.0) -> None:
        self.signing_key = signing_key  # resolved on first send (a secret)
        self.allow_loopback = allow_loopback
        self.timeout = timeout

    def check(self, url: str) -> None:
        validate_webhook_url(url, self.allow_loopback)

    def send(self, url: str, payload: dict[str, Any], event_id: str) -> int:
        import httpx

        body, headers = frame(payload, event_id, self.signing_key())
        resp = httpx.post(url, content=body, headers=headers, timeout=self.timeout, follow_redirects=False)
        return resp.status_code
