"""Live settings from the configuration store: current values, changed by the store's pushes."""

from __future__ import annotations

import logging
import threading

from taskflow.service_layer.ports import ConfigStore

log = logging.getLogger("taskflow.config")


class LiveConfig:
    """Values of ``defaults``' keys; a key absent from the store keeps its default."""

    def __init__(self, store: ConfigStore, defaults: dict[str, str]) -> None:
        self.store = store
        self.defaults = dict(defaults)
        self.values = dict(defaults)
        self._lock = threading.Lock()
        self._subscribed = False

    def refresh(self) -> None:
        """Read the store (subscribing to its changes the first time); on failure keep the current values."""
        try:
            if not self._subscribed:
                self.store.subscribe(list(self.defaults), self.apply)
                self._subscribed = True
            items = self.store.get(list(self.defaults))
        except Exception as exc:
            log.warning("configuration store unavailable, keeping current values: %s", exc)
            return
        with self._lock:
            self.values = {k: items.get(k, default) for k, default in self.defaults.items()}

    def apply(self, items: dict[str, str]) -> None:
        """A change pushed by the store: update the keys we know."""
        with self._lock:
            for key, value in items.items():
                if key in self.values:
                    self.values[key] = value

    def get_int(self, key: str) -> int:
        """The current value of ``key``, or its default when the store's value is not an integer."""
        try:
            return int(self.values[key])
        except ValueError:
            log.warning("configuration %s=%r is not an integer; using the default", key, self.values[key])
            return int(self.defaults[key])
