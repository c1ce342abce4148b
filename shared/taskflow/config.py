"""Settings from the environment (plain values, no I/O). Secrets are not here: the composition
root (``taskflow.bootstrap``) resolves them through the ``SecretStore`` port."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from taskflow.domain.limits import Quotas

DEV_SECRET_FILE = os.path.join("var", ".dev-jwt-secret")


def _env(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = environ.get(name)
    return value if value not in (None, "") else default


def env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = _env(environ, name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Oidc:
    """The OpenID Connect provider the web app signs in with (authorization code + PKCE)."""

    issuer: str
    client_id: str
    scope: str


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
    dapr_grpc_port: int
    app_api_token: str | None
    fanout_interval: float
    reminder_interval: float
    reminder_grace_seconds: int
    allow_loopback_webhooks: bool
    event_delivery: str
    dev: bool
    oidc: Oidc | None
    web_dir: str | None
    #: Concurrent creates share one transaction (TASKFLOW_GROUP_COMMIT; service_layer.group_commit).
    group_commit: bool = True
    #: Per-user limits (TASKFLOW_MAX_OPEN_TASKS, TASKFLOW_MAX_TAGS_PER_USER; docs/limits.md).
    quotas: Quotas = field(default_factory=Quotas)

    @property
    def embedded(self) -> bool:
        return self.mode == "embedded"

    @property
    def dapr_grpc_address(self) -> str:
        return f"127.0.0.1:{self.dapr_grpc_port}"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings (``os.environ`` unless given)."""
    e = os.environ if environ is None else environ
    mode = (_env(e, "TASKFLOW_MODE", "embedded") or "embedded").lower()
    if mode not in {"embedded", "dapr"}:
        raise RuntimeError(f"TASKFLOW_MODE must be 'embedded' or 'dapr', not {mode!r}")
    delivery = (_env(e, "TASKFLOW_EVENT_DELIVERY", "dapr") or "dapr").lower()
    if delivery not in {"dapr", "knative"}:
        raise RuntimeError(f"TASKFLOW_EVENT_DELIVERY must be 'dapr' or 'knative', not {delivery!r}")
    return Settings(
        mode=mode,
        jwks_url=_env(e, "TASKFLOW_JWKS_URL"),
        jwt_issuer=_env(e, "TASKFLOW_JWT_ISSUER"),
        jwt_audience=_env(e, "TASKFLOW_JWT_AUDIENCE"),
        secret_store=_env(e, "TASKFLOW_SECRET_STORE", "taskflow-secrets") or "",
        secret_name=_env(e, "TASKFLOW_SECRET_NAME"),
        pubsub=_env(e, "TASKFLOW_PUBSUB", "taskflow-pubsub") or "",
        state_store=_env(e, "TASKFLOW_STATE_STORE", "taskflow-state") or "",
        config_store=_env(e, "TASKFLOW_CONFIG_STORE", "taskflow-config") or "",
        webhook_binding=_env(e, "TASKFLOW_WEBHOOK_BINDING", "taskflow-webhook") or "",
        webhook_base_url=_env(e, "TASKFLOW_WEBHOOK_BASE_URL"),
        audit_app_id=_env(e, "TASKFLOW_AUDIT_APP_ID", "audit") or "",
        dapr_http_port=int(_env(e, "DAPR_HTTP_PORT", "3500") or 3500),
        dapr_grpc_port=int(_env(e, "DAPR_GRPC_PORT", "50001") or 50001),
        app_api_token=_env(e, "APP_API_TOKEN"),
        fanout_interval=float(_env(e, "TASKFLOW_FANOUT_INTERVAL", "2") or 2),
        reminder_interval=float(_env(e, "TASKFLOW_REMINDER_INTERVAL", "10") or 10),
        reminder_grace_seconds=int(_env(e, "TASKFLOW_REMINDER_GRACE", "86400") or 86400),
        allow_loopback_webhooks=env_flag(e, "TASKFLOW_ALLOW_LOOPBACK_WEBHOOKS", mode == "embedded"),
        event_delivery=delivery,
        dev=env_flag(e, "TASKFLOW_DEV", False),
        oidc=_oidc(e),
        web_dir=_env(e, "TASKFLOW_WEB_DIR"),
        group_commit=env_flag(e, "TASKFLOW_GROUP_COMMIT", True),
        quotas=Quotas(
            open_tasks=int(_env(e, "TASKFLOW_MAX_OPEN_TASKS") or Quotas.open_tasks),
            tags=int(_env(e, "TASKFLOW_MAX_TAGS_PER_USER") or Quotas.tags),
        ),
    )


def _oidc(e: Mapping[str, str]) -> Oidc | None:
    """TASKFLOW_OIDC_ISSUER and TASKFLOW_OIDC_CLIENT_ID (both, or OIDC sign-in is off)."""
    issuer, client_id = _env(e, "TASKFLOW_OIDC_ISSUER"), _env(e, "TASKFLOW_OIDC_CLIENT_ID")
    if not issuer or not client_id:
        return None
    return Oidc(issuer.rstrip("/"), client_id, _env(e, "TASKFLOW_OIDC_SCOPE", "openid") or "openid")
