"""Bearer JWT verification (PyJWT): HS256 with a shared secret, or keys from a JWKS URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from taskflow.config import Settings
from taskflow.domain.limits import OUTGOING_TIMEOUT


class Unauthorized(Exception):
    """Missing or invalid credentials; ``error`` goes into WWW-Authenticate (RFC 6750)."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class Tokens:
    """Verifies bearer tokens with the configured HS256 secret or JWKS URL (keys cached 5 min)."""

    def __init__(self, settings: Settings, secret: Callable[[], str | None]) -> None:
        self.settings = settings
        self.secret = secret  # resolved on first use (a secret)
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks_client(self, url: str) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks is None:
                self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=OUTGOING_TIMEOUT.max)
            return self._jwks

    def authenticate(self, header: str | None) -> str:
        """Return the user id (``sub``) of a valid bearer token, or raise Unauthorized."""
        if not header:
            raise Unauthorized("missing bearer token", error="invalid_request")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'", error="invalid_request")
        token = token.strip()
        s = self.settings
        options: Any = {"require": ["exp", "sub"], "verify_aud": bool(s.jwt_audience)}
        try:
            if s.jwks_url:
                key: Any = self._jwks_client(s.jwks_url).get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256", "EdDSA", "PS256"]
            else:
                key = self.secret()
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


def issue(user_id: str, settings: Settings, secret: str | None, ttl_seconds: int = 3600) -> str:
    """A token signed with the HS256 ``secret`` (``taskflow token``; tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if not secret:
        raise RuntimeError("no HS256 secret configured (TASKFLOW_JWT_SECRET)")
    return jwt.encode(claims, secret, algorithm="HS256")
