"""Settings from the environment, read lazily (no I/O at import time).

In ``dapr`` mode the database URL and the JWT secret come from the Dapr secret store when
they are not in the environment, so that no secret needs to be in a function's environment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger("taskflow.config")

DEV_SECRET_FILE = os.path.join("var", ".dev-jwt-secret")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    mode: str
    jwks_url: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    secret_store: str
    secret_name: str | None
    pubsub: str
    state_store: str
    config_store: str
    webhook_binding: str
    webhook_base_url: str | None
    audit_app_id: str
    dapr_http_port: int
    app_api_token: str | None
    dapr_api_token: str | None
    fanout_interval: float
    reminder_interval: float
    reminder_grace_seconds: int
    allow_loopback_webhooks: bool
    event_delivery: str

    @property
    def embedded(self) -> bool:
        return self.mode == "embedded"

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.dapr_http_port}"


@lru_cache(maxsize=1)
def settings() -> Settings:
    mode = (_env("TASKFLOW_MODE", "embedded") or "embedded").lower()
    if mode not in {"embedded", "dapr"}:
        raise RuntimeError(f"TASKFLOW_MODE must be 'embedded' or 'dapr', not {mode!r}")
    delivery = (_env("TASKFLOW_EVENT_DELIVERY", "dapr") or "dapr").lower()
    if delivery not in {"dapr", "knative"}:
        raise RuntimeError(f"TASKFLOW_EVENT_DELIVERY must be 'dapr' or 'knative', not {delivery!r}")
    return Settings(
        mode=mode,
        jwks_url=_env("TASKFLOW_JWKS_URL"),
        jwt_issuer=_env("TASKFLOW_JWT_ISSUER"),
        jwt_audience=_env("TASKFLOW_JWT_AUDIENCE"),
        secret_store=_env("TASKFLOW_SECRET_STORE", "taskflow-secrets") or "",
        secret_name=_env("TASKFLOW_SECRET_NAME"),
        pubsub=_env("TASKFLOW_PUBSUB", "taskflow-pubsub") or "",
        state_store=_env("TASKFLOW_STATE_STORE", "taskflow-state") or "",
        config_store=_env("TASKFLOW_CONFIG_STORE", "taskflow-config") or "",
        webhook_binding=_env("TASKFLOW_WEBHOOK_BINDING", "taskflow-webhook") or "",
        webhook_base_url=_env("TASKFLOW_WEBHOOK_BASE_URL"),
        audit_app_id=_env("TASKFLOW_AUDIT_APP_ID", "audit") or "",
        dapr_http_port=int(_env("DAPR_HTTP_PORT", "3500") or 3500),
        app_api_token=_env("APP_API_TOKEN"),
        dapr_api_token=_env("DAPR_API_TOKEN"),
        fanout_interval=float(_env("TASKFLOW_FANOUT_INTERVAL", "2") or 2),
        reminder_interval=float(_env("TASKFLOW_REMINDER_INTERVAL", "10") or 10),
        reminder_grace_seconds=int(_env("TASKFLOW_REMINDER_GRACE", "86400") or 86400),
        allow_loopback_webhooks=_bool("TASKFLOW_ALLOW_LOOPBACK_WEBHOOKS", mode == "embedded"),
        event_delivery=delivery,
    )


def _secret(env_name: str, key: str) -> str | None:
    value = _env(env_name)
    if value is not None:
        return value
    if settings().mode == "dapr":
        from taskflow.adapters.dapr import DaprSecrets

        return DaprSecrets().get(key)
    return None


@lru_cache(maxsize=1)
def database_url() -> str:
    url = _secret("TASKFLOW_DATABASE_URL", "database-url")
    if url:
        return url
    if settings().mode == "dapr":
        raise RuntimeError("no database URL: set secret 'database-url' in the secret store")
    os.makedirs("var", exist_ok=True)
    return "sqlite:///var/taskflow.db"


@lru_cache(maxsize=1)
def jwt_secret() -> str | None:
    secret = _secret("TASKFLOW_JWT_SECRET", "jwt-secret")
    if secret:
        return secret
    if settings().jwks_url:
        return None
    if settings().embedded and _bool("TASKFLOW_DEV", False):
        log.warning(
            "!!! TASKFLOW_JWT_SECRET is not set: using a development secret generated into %s. "
            "Anyone who can read that file can mint tokens. Set TASKFLOW_JWT_SECRET outside your laptop. !!!",
            DEV_SECRET_FILE,
        )
        return _dev_secret()
    raise RuntimeError("TASKFLOW_JWT_SECRET (or TASKFLOW_JWKS_URL) must be set")


def dev_secret_in_use() -> bool:
    """True when tokens are signed with the generated development secret (embedded ``taskflow dev`` only)."""
    s = settings()
    return s.embedded and not s.jwks_url and _env("TASKFLOW_JWT_SECRET") is None and _bool("TASKFLOW_DEV", False)


@dataclass(frozen=True)
class Oidc:
    """The OpenID Connect provider the web app signs in with (authorization code + PKCE)."""

    issuer: str
    client_id: str
    scope: str


def oidc() -> Oidc | None:
    """TASKFLOW_OIDC_ISSUER and TASKFLOW_OIDC_CLIENT_ID (both, or OIDC sign-in is off)."""
    issuer, client_id = _env("TASKFLOW_OIDC_ISSUER"), _env("TASKFLOW_OIDC_CLIENT_ID")
    if not issuer or not client_id:
        return None
    return Oidc(issuer.rstrip("/"), client_id, _env("TASKFLOW_OIDC_SCOPE", "openid") or "openid")


def _dev_secret() -> str:
    """A random per-checkout secret shared by `taskflow dev` and `taskflow token` (mode 0600)."""
    import secrets

    try:
        with open(DEV_SECRET_FILE) as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(DEV_SECRET_FILE), exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


@lru_cache(maxsize=1)
def webhook_signing_key() -> str:
    key = _secret("TASKFLOW_WEBHOOK_SIGNING_KEY", "webhook-signing-key")
    if key:
        return key
    if settings().embedded:
        # Embedded mode derives a stable per-installation key from the JWT secret.
        import hashlib

        return hashlib.sha256(b"taskflow-webhook:" + (jwt_secret() or "").encode()).hexdigest()
    raise RuntimeError("no webhook signing key: set secret 'webhook-signing-key'")


def reset() -> None:
    """Forget cached settings (tests change the environment)."""
    settings.cache_clear()
    database_url.cache_clear()
    jwt_secret.cache_clear()
    webhook_signing_key.cache_clear()
