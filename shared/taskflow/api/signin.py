"""How the web app signs in: which methods this server offers, and development tokens.

A development token is handed out only while tokens are signed with the secret that
``taskflow dev`` generated for this checkout; with a real secret or a JWKS the route refuses.
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taskflow.api import auth
from taskflow.api.http import HttpError, json_response, read_model
from taskflow.bootstrap import Root

DEV_TOKEN_TTL = 12 * 3600


class DevTokenRequest(BaseModel):
    """The user name to sign in as (it becomes the token's ``sub``)."""

    model_config = ConfigDict(extra="forbid")
    user: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class DevToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="Lifetime in seconds")


class OidcOptions(BaseModel):
    issuer: str
    client_id: str
    scope: str


class SignInOptions(BaseModel):
    """What the sign-in screen offers: a user name (development secret only), OIDC, pasting a token."""

    dev_token: bool
    oidc: OidcOptions | None


def options(request: Request, root: Root) -> Response:
    oidc = root.settings.oidc
    body: dict[str, Any] = {
        "dev_token": root.dev_secret_in_use,
        "oidc": None if oidc is None else {"issuer": oidc.issuer, "client_id": oidc.client_id, "scope": oidc.scope},
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


def dev_token(request: Request, root: Root) -> Response:
    if not root.dev_secret_in_use:
        raise HttpError(
            403,
            "Development sign-in is off",
            "this server signs tokens with a configured secret or JWKS; sign in with your identity provider "
            "or paste a token",
            slug="dev-token-disabled",
        )
    payload, _ = read_model(request, DevTokenRequest)
    token = auth.issue(payload.user, root.settings, root.jwt_secret, DEV_TOKEN_TTL)
    return json_response(
        DevToken(access_token=token, expires_in=DEV_TOKEN_TTL).model_dump(), headers={"Cache-Control": "no-store"}
    )
