"""Retrying a step with exponential back-off while what it needs (Milvus, the broker, a disk) is
away: one loop for every service, so each caller only says what to retry and what to log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The service began stopping during a pause: the step was not done (it is redone at the next start)."""


@dataclass(frozen=True)
class Backoff:
    first_s: float = 0.5
    max_s: float = 30.0

    def grow(self, delay: float) -> float:
        """The pause after one of `delay`: doubled, at least first_s, at most max_s."""
        return min(self.max_s, max(self.first_s, delay * 2))

    def run(
        self,
        step: Callable[[], T],
        retry_on: type[Exception] | tuple[type[Exception], ...],
        on_retry: Callable[[Exception, float], None],
        stopping: threading.Event | None = None,
        give_up_after_s: float | None = None,
    ) -> T:
        """`step()`'s result, calling it again after `on_retry(error, pause)` and a pause (doubling up to
        max_s) while it raises `retry_on`. Other errors propagate at once; so does the last one when
        the next pause would end past `give_up_after_s`. Raises Stopped if `stopping` is set meanwhile."""
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        delay = self.first_s
        while True:
            try:
                return step()
            except retry_on as exc:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                on_retry(exc, delay)
                if stopping is None:
                    time.sleep(delay)
                elif stopping.wait(delay):
                    raise Stopped from exc
                delay = self.grow(delay)
