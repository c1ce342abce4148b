"""Live settings from the configuration store: read once, then changed by the store's notifications."""

from __future__ import annotations

import logging
import threading

from taskflow.service_layer.ports import ConfigStore

log = logging.getLogger("taskflow.config")


class LiveConfig:
    """Values of ``defaults``' keys; a key absent from the store keeps its default.

    A store that notifies changes (the Dapr sidecar's subscription) is read again only after a
    change (so a deleted key falls back to its default); one that cannot (embedded mode's table)
    is read on every ``refresh``.
    """

    def __init__(self, store: ConfigStore, defaults: dict[str, str]) -> None:
        self.store = store
        self.defaults = dict(defaults)
        self.values = dict(defaults)
        self._lock = threading.Lock()
        self._subscribed = False
        self._notified = False  # the store tells us about changes
        self._stale = True

    def refresh(self) -> None:
        """Make the values current; on failure keep them and try again next time."""
        try:
            if not self._subscribed:
                self._notified = self.store.subscribe(list(self.defaults), self.apply)
                self._subscribed = True
            if self._notified and not self._stale:
                return
            self._stale = False
            items = self.store.get(list(self.defaults))
        except Exception as exc:
            self._stale = True
            log.warning("configuration store unavailable, keeping current values: %s", exc)
            return
        with self._lock:
            self.values = {k: items.get(k, default) for k, default in self.defaults.items()}

    def apply(self, items: dict[str, str]) -> None:
        """A change notified by the store: take the new values now, and read the store again at the
        next refresh (a notification may be a deletion)."""
        with self._lock:
            for key, value in items.items():
                if key in self.values:
                    self.values[key] = value
        self._stale = True

    def get_int(self, key: str) -> int:
        """The current value of ``key``, or its default when the store's value is not an integer."""
        try:
            return int(self.values[key])
        except ValueError:
            log.warning("configuration %s=%r is not an integer; using the default", key, self.values[key])
            return int(self.defaults[key])
