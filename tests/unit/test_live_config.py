"""Live settings: read once from a store that notifies changes, again only after a change; a bad
value falls back to that key's own default."""

from __future__ import annotations

from collections.abc import Callable

from taskflow.service_layer.live_config import LiveConfig


class Store:
    """A configuration store port that counts reads and hands out its change callback."""

    def __init__(self, items: dict[str, str], notifies: bool) -> None:
        self.items = items
        self.notifies = notifies
        self.reads = 0
        self.on_change: Callable[[dict[str, str]], None] | None = None

    def get(self, keys: list[str]) -> dict[str, str]:
        self.reads += 1
        return {k: v for k, v in self.items.items() if k in keys}

    def subscribe(self, keys: list[str], on_change: Callable[[dict[str, str]], None]) -> bool:
        self.on_change = on_change
        return self.notifies


def test_a_notifying_store_is_read_again_only_after_a_change() -> None:
    store = Store({"grace": "60"}, notifies=True)
    live = LiveConfig(store, {"grace": "86400", "batch": "10"})
    for _ in range(3):
        live.refresh()
    assert store.reads == 1 and live.get_int("grace") == 60 and live.get_int("batch") == 10
    assert store.on_change is not None
    store.items = {}  # the operator deletes the key: the notification carries the old row
    store.on_change({"grace": "60"})
    live.refresh()
    assert store.reads == 2 and live.get_int("grace") == 86400


def test_a_store_that_cannot_notify_is_read_each_time() -> None:
    store = Store({}, notifies=False)
    live = LiveConfig(store, {"grace": "86400"})
    live.refresh()
    store.items = {"grace": "3600"}
    live.refresh()
    assert store.reads == 2 and live.get_int("grace") == 3600


def test_a_value_that_is_not_an_integer_falls_back_to_that_keys_default() -> None:
    live = LiveConfig(Store({"batch": "many"}, notifies=False), {"grace": "86400", "batch": "10"})
    live.refresh()
    assert live.get_int("batch") == 10 and live.get_int("grace") == 86400
