"""Least recently used caches that the page's request threads share (cachetools' own take no lock)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLRU(Generic[K, V]):
    """At most `maxsize` items, or `maxsize` in the units of `getsizeof` (bytes, say); the least
    recently used goes first."""

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        self._items: LRUCache[K, V] = LRUCache(maxsize=maxsize, getsizeof=getsizeof)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self._items.currsize)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        """A value larger than the whole cache is not kept, and evicts nothing."""
        with self._lock:
            if self._items.getsizeof(value) <= self._items.maxsize:
                self._items[key] = value

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)
