"""Webhook URL policy: https only, and never an address inside our own network (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
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
