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

from taskflow.domain.limits import OUTGOING_TIMEOUT

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as the sender would connect)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%")[0] for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally routable unicast address (and no private IPv4 hidden in an IPv6 one)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return False  # IPv4-mapped, 6to4, Teredo, NAT64: never needed for a webhook, a classic bypass
    return address.is_global and not address.is_multicast


def resolve_webhook_url(
    url: str, allow_loopback: bool, resolve: Resolver = system_resolver
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses a safe webhook URL resolves to, else ValueError saying why (the SSRF policy).

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
        addresses = [ipaddress.ip_address(a) for a in resolve(host, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise ValueError(f"webhook_url host {host!r} does not resolve") from exc
    if not addresses:
        raise ValueError(f"webhook_url host {host!r} does not resolve")
    if allow_loopback and all(a.is_loopback for a in addresses):
        return addresses
    if parts.scheme != "https":
        raise ValueError("webhook_url must use https")
    for address in addresses:
        if not is_public(address):
            raise ValueError(f"webhook_url resolves to a non-public address ({address}); refused")
    return addresses


def validate_webhook_url(url: str, allow_loopback: bool, resolve: Resolver = system_resolver) -> str:
    """Return the URL if it is safe to POST to, else raise ValueError saying why."""
    resolve_webhook_url(url, allow_loopback, resolve)
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
    """The webhook sender without a sidecar: a plain HTTP POST (embedded mode).

    The URL is checked again at delivery, and the POST goes to the very address that was
    checked (the Host header and TLS server name stay the URL's), so a DNS answer that changes
    between the check and the connection (DNS rebinding) cannot reach an internal address.
    Redirects are never followed: a 3xx counts as a refusal.
    """

    def __init__(
        self,
        signing_key: Callable[[], str],
        allow_loopback: bool,
        timeout: float = OUTGOING_TIMEOUT.max,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.signing_key = signing_key  # resolved on first send (a secret)
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        self.resolve = resolve

    def check(self, url: str) -> None:
        validate_webhook_url(url, self.allow_loopback, self.resolve)

    def send(self, url: str, payload: dict[str, Any], event_id: str) -> int:
        import httpx

        address = resolve_webhook_url(url, self.allow_loopback, self.resolve)[0]
        body, headers = frame(payload, event_id, self.signing_key())
        parts = urlsplit(url)
        host = parts.hostname or ""
        pinned = httpx.URL(url).copy_with(host=str(address))
        headers["Host"] = parts.netloc.rpartition("@")[2]
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            request = client.build_request(
                "POST",
                pinned,
                content=body,
                headers=headers,
                extensions={"sni_hostname": host} if parts.scheme == "https" else {},
            )
            resp = client.send(request)
        return resp.status_code
