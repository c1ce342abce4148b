"""OpenID Connect sign-in (authorization code + PKCE) in Chromium, against a TaskFlow that verifies
tokens with the provider's JWKS and so refuses development tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web import identity_provider
from tests.web.conftest import check_axe, free_port, new_context, open_page, taskflow_dev

pytestmark = pytest.mark.web


@pytest.fixture(scope="module")
def provider() -> Iterator[identity_provider.Provider]:
    with identity_provider.running(free_port(28095)) as p:
        yield p


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory: pytest.TempPathFactory, provider: identity_provider.Provider) -> Iterator[str]:
    with taskflow_dev(
        tmp_path_factory.mktemp("taskflow-oidc"),
        free_port(28096),
        TASKFLOW_JWKS_URL=f"{provider.issuer}/jwks",
        TASKFLOW_JWT_ISSUER=provider.issuer,
        TASKFLOW_OIDC_ISSUER=provider.issuer,
        TASKFLOW_OIDC_CLIENT_ID=identity_provider.CLIENT_ID,
    ) as base:
        yield base


@pytest.fixture
def sso_page(browser: Any, sso_server: str) -> Iterator[Any]:
    yield from open_page(new_context(browser, sso_server, viewport={"width": 1280, "height": 860}))


def test_single_sign_on_with_pkce(sso_page: Any, sso_server: str, provider: identity_provider.Provider) -> None:
    page = sso_page
    refused = httpx.post(f"{sso_server}/v1/auth/dev-token", json={"user": "mallory"})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    page.goto("/?status=all")
    expect(page.get_by_role("button", name="Continue with single sign-on")).to_be_visible()
    expect(page.get_by_label("User name")).to_have_count(0)  # no development sign-in here
    check_axe(page)
    # the whole round trip: discovery, the provider's redirect back, a fresh page load, the token request
    to_token = lambda r: r.url.startswith(f"{provider.issuer}/token")  # noqa: E731
    with page.expect_request(to_token, timeout=30_000) as token_request:
        page.get_by_role("button", name="Continue with single sign-on").click()
    assert "code_verifier=" in (token_request.value.post_data or "")
    page.get_by_label("Search tasks").wait_for(timeout=30_000)
    # back on the app: the code is gone from the URL, the filters from before the trip are kept
    expect(page).to_have_url(f"{sso_server}/?status=all")
    expect(page.get_by_text(identity_provider.USER)).to_be_visible()
    page.get_by_label("Quick add").fill("Signed in with SSO")
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("checkbox", name="Complete Signed in with SSO")).to_be_visible()
    assert provider.tokens_issued == 1
