"""The webhook URL policy (SSRF)."""

from __future__ import annotations

import pytest

from taskflow.adapters.webhooks import validate_webhook_url


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.0.10/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://[::ffff:127.0.0.1]/",
        "gopher://example.com/",
        "https:///nohost",
        "https://u:p@93.184.215.14/",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        validate_webhook_url(url, allow_loopback=False)


def test_public_https_is_accepted_and_loopback_only_when_allowed() -> None:
    assert validate_webhook_url("https://93.184.215.14/hook", allow_loopback=False)
    assert validate_webhook_url("http://127.0.0.1:9000/hook", allow_loopback=True)
    with pytest.raises(ValueError):
        validate_webhook_url("http://127.0.0.1:9000/hook", allow_loopback=False)
    with pytest.raises(ValueError):
        validate_webhook_url("http://10.0.0.1/hook", allow_loopback=True)
