"""Which adapter implements each port in this process: in-process (embedded) or the Dapr sidecar.

Everything is built on first use, never at import time (cold start).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from taskflow import config
from taskflow.adapters import db
from taskflow.adapters.ports import ConfigStore, Invoker, OutputBinding, Publisher, StateStore


@dataclass
class Ports:
    publisher: Publisher | None = None
    invoker: Invoker | None = None
    binding: OutputBinding | None = None
    state: StateStore | None = None
    config: ConfigStore | None = None


_ports = Ports()
_lock = threading.Lock()
_migrated: set[str] = set()


def engine() -> Engine:
    url = config.database_url()
    eng = db.engine_for(url)
    if config.settings().embedded and url not in _migrated:
        with _lock:
            if url not in _migrated:
                db.migrate(url)  # embedded mode creates and migrates its database on first start
                _migrated.add(url)
    return eng


def use(**ports: Any) -> None:
    """Install adapters (embedded runtime and tests)."""
    for name, value in ports.items():
        setattr(_ports, name, value)


def reset() -> None:
    global _ports
    _ports = Ports()
    _migrated.clear()


def _dapr() -> bool:
    return config.settings().mode == "dapr"


def publisher() -> Publisher:
    if _ports.publisher is None:
        if not _dapr():
            raise RuntimeError("no publisher installed (embedded runtime not started)")
        from taskflow.adapters.dapr import DaprPublisher

        _ports.publisher = DaprPublisher()
    return _ports.publisher


def invoker() -> Invoker:
    if _ports.invoker is None:
        if not _dapr():
            raise RuntimeError("no invoker installed (embedded runtime not started)")
        from taskflow.adapters.dapr import DaprInvoker

        _ports.invoker = DaprInvoker()
    return _ports.invoker


def binding() -> OutputBinding:
    if _ports.binding is None:
        if _dapr():
            from taskflow.adapters.dapr import DaprBinding

            _ports.binding = DaprBinding()
        else:
            from taskflow.adapters.inprocess import DirectHttpBinding

            _ports.binding = DirectHttpBinding()
    return _ports.binding


def state() -> StateStore:
    if _ports.state is None:
        if _dapr():
            from taskflow.adapters.dapr import DaprState

            _ports.state = DaprState()
        else:
            from taskflow.adapters.inprocess import SqlState

            _ports.state = SqlState(engine())
    return _ports.state


def config_store() -> ConfigStore:
    if _ports.config is None:
        if _dapr():
            from taskflow.adapters.dapr import DaprConfig

            _ports.config = DaprConfig()
        else:
            from taskflow.adapters.inprocess import SqlConfig

            _ports.config = SqlConfig(engine())
    return _ports.config


def publish_after_commit(envelopes: list[Any], now: Any) -> None:
    """Publish what a transaction just committed; anything not accepted waits for the relay."""
    if not envelopes:
        return
    import logging

    from taskflow.service_layer import handlers

    try:
        pub = publisher()
    except RuntimeError:
        return  # no publisher in this process: the outbox relay sends them
    try:
        handlers.publish_now(engine(), pub, envelopes, now)
    except Exception:
        logging.getLogger("taskflow.runtime").exception("immediate publish failed; the outbox relay retries")
