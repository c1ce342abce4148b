"""Bearer JWT verification (PyJWT): HS256 with a shared secret, or keys from a JWKS URL."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import jwt

from taskflow import config


class Unauthorized(Exception):
    """Missing or invalid credentials; ``error`` goes into WWW-Authenticate (RFC 6750)."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300)


def authenticate(header: str | None) -> str:
    """Return the user id (``sub``) of a valid bearer token, or raise Unauthorized."""
    if not header:
        raise Unauthorized("missing bearer token", error="invalid_request")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", error="invalid_request")
    token = token.strip()
    s = config.settings()
    options: Any = {"require": ["exp", "sub"], "verify_aud": bool(s.jwt_audience)}
    try:
        if s.jwks_url:
            key: Any = _jwks_client(s.jwks_url).get_signing_key_from_jwt(token).key
            algorithms = ["RS256", "ES256", "EdDSA", "PS256"]
        else:
            key = config.jwt_secret()
            algorithms = ["HS256"]
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=s.jwt_audience,
            issuer=s.jwt_issuer,
            options=options,
            leeway=30,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > 255:
        raise Unauthorized("token has no usable 'sub' claim")
    return sub


def issue(user_id: str, ttl_seconds: int = 3600, secret: str | None = None) -> str:
    """A token signed with the configured HS256 secret (``taskflow token``; tests)."""
    s = config.settings()
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if s.jwt_issuer:
        claims["iss"] = s.jwt_issuer
    if s.jwt_audience:
        claims["aud"] = s.jwt_audience
    key = secret or config.jwt_secret()
    if not key:
        raise RuntimeError("no HS256 secret configured (TASKFLOW_JWT_SECRET)")
    return jwt.encode(claims, key, algorithm="HS256")
