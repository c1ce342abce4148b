"""The composition root: everything a process needs for its mode (embedded or Dapr), in one place.

It reads the settings, resolves secrets through the ``SecretStore`` port, and builds the unit of
work factory, the ports and the clock. Each piece is built on first use, never at import (cold
start); the functions ask ``root()`` at their first request. Tests and embedded mode build a
``Root`` of their own (with fakes or in-process adapters) and ``install`` it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from taskflow import config
from taskflow.service_layer.live_config import LiveConfig
from taskflow.service_layer.ports import (
    Clock,
    ConfigStore,
    Invoker,
    ObjectStore,
    Publisher,
    SecretStore,
    StateStore,
    WebhookSender,
)
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger("taskflow.bootstrap")
T = TypeVar("T")


def system_clock() -> datetime:
    return datetime.now(UTC)


class Root:
    """The ports and resources of one process. Pass a port to use it instead of the mode's own."""

    def __init__(
        self,
        settings: config.Settings,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Clock = system_clock,
        **ports: Any,
    ) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self._built: dict[str, Any] = dict(ports)
        self._given = set(ports)  # passed in: the caller owns them (close() leaves them alone)
        self._lock = threading.RLock()

    def component(self, name: str, build: Callable[[], T]) -> T:
        """The part called ``name``, built by ``build`` on first use (once per root)."""
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            value: T = self._built[name]
            return value

    def use(self, **ports: Any) -> None:
        """Install ports (embedded mode's bus and invoker; tests)."""
        with self._lock:
            self._built.update(ports)

    @property
    def dapr(self) -> bool:
        return self.settings.mode == "dapr"

    # --- secrets and the database ------------------------------------------------------------

    def _sidecar(self) -> Any:
        from taskflow import observability
        from taskflow.adapters.dapr import Sidecar

        return self.component(
            "sidecar", lambda: Sidecar(self.settings.dapr_grpc_address, observability.grpc_interceptors)
        )

    @property
    def secrets(self) -> SecretStore:
        def build() -> SecretStore:
            from taskflow.adapters.inprocess import EnvSecrets

            fallback = None
            if self.dapr:
                from taskflow.adapters.dapr import DaprSecrets

                s = self.settings
                fallback = DaprSecrets(self._sidecar(), s.secret_store, s.secret_name)
            return EnvSecrets(self.environ, fallback)

        return self.component("secrets", build)

    @property
    def database_url(self) -> str:
        def build() -> str:
            url = self.secrets.get("database-url")
            if url:
                return url
            if self.dapr:
                raise RuntimeError("no database URL: set secret 'database-url' in the secret store")
            os.makedirs("var", exist_ok=True)
            return "sqlite:///var/taskflow.db"

        return self.component("database_url", build)

    @property
    def engine(self) -> Engine:
        def build() -> Engine:
            from taskflow import observability
            from taskflow.adapters import db

            engine = db.build_engine(self.database_url)
            observability.instrument_engine(engine)
            if self.settings.embedded:
                db.migrate(engine)  # embedded mode creates and migrates its database on first start
            return engine

        return self.component("engine", build)

    def check_database(self) -> None:
        """Raise unless the database answers (readiness)."""
        from taskflow.adapters.repository import ping

        with self.engine.connect() as conn:
            ping(conn)

    def check_sidecar(self) -> None:
        """Raise unless the Dapr sidecar is ready to reach its components (Dapr mode; readiness)."""
        if not self.dapr:
            return
        import httpx

        url = f"http://127.0.0.1:{self.settings.dapr_http_port}/v1.0/healthz/outbound"
        status = httpx.get(url, timeout=2.0).status_code
        if not 200 <= status < 300:
            raise RuntimeError(f"the sidecar's outbound health check answered {status}")

    def uow(self, source: str = "/taskflow/tasks-api") -> AbstractUnitOfWork:
        """A unit of work; the events it records carry ``source``."""
        factory = self._built.get("uow_factory")
        if factory is not None:
            return factory(source)  # type: ignore[no-any-return]
        from taskflow.adapters.sql_unit_of_work import SqlUnitOfWork

        return SqlUnitOfWork(self.engine, source)

    def rehearsal(self, source: str = "/taskflow/tasks-api") -> AbstractUnitOfWork | None:
        """A unit of work that runs its statements and rolls back at commit (``api/warmup.py``);
        None where units of work are not SQL ones of this root (a test's own factory)."""
        if "uow_factory" in self._built:
            return None
        from taskflow.adapters.sql_unit_of_work import SqlUnitOfWork

        return SqlUnitOfWork(self.engine, source, rehearsal=True)

    @property
    def jwt_secret(self) -> str | None:
        def build() -> str | None:
            secret = self.secrets.get("jwt-secret")
            if secret:
                return secret
            if self.settings.jwks_url:
                return None
            if self.settings.embedded and self.settings.dev:
                log.warning(
                    "!!! TASKFLOW_JWT_SECRET is not set: using a development secret generated into %s. "
                    "Anyone who can read that file can mint tokens. Set TASKFLOW_JWT_SECRET outside your laptop. !!!",
                    config.DEV_SECRET_FILE,
                )
                return _dev_secret()
            raise RuntimeError("TASKFLOW_JWT_SECRET (or TASKFLOW_JWKS_URL) must be set")

        return self.component("jwt_secret", build)

    @property
    def dev_secret_in_use(self) -> bool:
        """True when tokens are signed with the generated development secret (embedded ``taskflow dev`` only)."""
        s = self.settings
        return s.embedded and s.dev and not s.jwks_url and not self.secrets.get("jwt-secret")

    @property
    def webhook_signing_key(self) -> str:
        def build() -> str:
            key = self.secrets.get("webhook-signing-key")
            if key:
                return key
            if self.settings.embedded:
                # Embedded mode derives a stable per-installation key from the JWT secret.
                return hashlib.sha256(b"taskflow-webhook:" + (self.jwt_secret or "").encode()).hexdigest()
            raise RuntimeError("no webhook signing key: set secret 'webhook-signing-key'")

        return self.component("webhook_signing_key", build)

    # --- the ports ---------------------------------------------------------------------------

    @property
    def publisher(self) -> Publisher | None:
        """None in a process without one (embedded mode before its bus starts): the relay sends."""

        def build() -> Publisher | None:
            if not self.dapr:
                return None
            from taskflow.adapters.dapr import DaprPublisher

            return DaprPublisher(self._sidecar(), self.settings.pubsub)

        return self.component("publisher", build)

    @property
    def invoker(self) -> Invoker:
        def build() -> Invoker:
            if not self.dapr:
                raise RuntimeError("no invoker installed (embedded runtime not started)")
            from taskflow.adapters.dapr import DaprInvoker

            return DaprInvoker(self._sidecar())

        return self.component("invoker", build)

    @property
    def webhooks(self) -> WebhookSender:
        def build() -> WebhookSender:
            s = self.settings
            key = lambda: self.webhook_signing_key  # noqa: E731 - a secret, resolved on first send
            if self.dapr:
                from taskflow.adapters.dapr import DaprWebhookSender

                return DaprWebhookSender(
                    self._sidecar(), s.webhook_binding, s.webhook_base_url, key, s.allow_loopback_webhooks
                )
            from taskflow import observability
            from taskflow.adapters.webhooks import DirectWebhookSender

            observability.instrument_httpx()
            return DirectWebhookSender(key, s.allow_loopback_webhooks)

        return self.component("webhooks", build)

    @property
    def state(self) -> StateStore:
        def build() -> StateStore:
            if self.dapr:
                from taskflow.adapters.dapr import DaprState

                return DaprState(self._sidecar(), self.settings.state_store)
            from taskflow.adapters.inprocess import SqlState

            return SqlState(self.engine, self.clock)

        return self.component("state", build)

    @property
    def config_store(self) -> ConfigStore:
        def build() -> ConfigStore:
            if self.dapr:
                from taskflow.adapters.dapr import DaprConfig

                return DaprConfig(self._sidecar(), self.settings.config_store)
            from taskflow.adapters.inprocess import SqlConfig

            return SqlConfig(self.engine)

        return self.component("config_store", build)

    @property
    def object_store(self) -> ObjectStore:
        """Exports and the audit archive: a local folder embedded, the S3 output binding with Dapr."""

        def build() -> ObjectStore:
            if self.dapr:
                from taskflow.adapters.dapr_objects import DaprObjectStore

                binding = self.environ.get("TASKFLOW_OBJECT_BINDING") or "taskflow-objects"
                return DaprObjectStore(self._sidecar(), binding)
            from taskflow.adapters.object_store import LocalFolderStore

            folder = self.environ.get("TASKFLOW_EXPORTS_DIR") or os.path.join("var", "exports")
            key = lambda: hashlib.sha256(b"taskflow-downloads:" + (self.jwt_secret or "").encode()).hexdigest()  # noqa: E731
            return LocalFolderStore(folder, key, self.clock)

        return self.component("object_store", build)

    def live_config(self, defaults: dict[str, str]) -> LiveConfig:
        """The live settings of ``defaults``' keys (one per process and key set)."""
        return self.component("live:" + ",".join(sorted(defaults)), lambda: LiveConfig(self.config_store, defaults))

    def close(self) -> None:
        """Release what this root built (the engine's connections, the sidecar channel)."""
        with self._lock:
            engine, sidecar = self._built.get("engine"), self._built.get("sidecar")
            if engine is not None and "engine" not in self._given:
                engine.dispose()
            if sidecar is not None and "sidecar" not in self._given:
                sidecar.close()
            self._built.clear()


def _dev_secret() -> str:
    """A random per-checkout secret shared by `taskflow dev` and `taskflow token` (mode 0600)."""
    import secrets

    try:
        with open(config.DEV_SECRET_FILE) as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(config.DEV_SECRET_FILE), exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(config.DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


# The one piece of module-level state: this process's root, built at the first request.
_root: Root | None = None
_root_lock = threading.Lock()


def root() -> Root:
    """This process's root: the installed one, else one built from the environment."""
    global _root
    with _root_lock:
        if _root is None:
            _root = Root(config.load())
        return _root


def install(new: Root | None) -> None:
    """Make ``new`` this process's root (embedded mode, tests); None forgets it."""
    global _root
    with _root_lock:
        _root = new
