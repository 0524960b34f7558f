"""A pass run again and again on a thread of its own (the query service's background jobs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs `run` every `interval_s` (the first pass at once when `at_start`) until stopped. A pass
    that raises one of `retried` (a server away) is a warning, anything else is logged with its
    stack; either way the job goes on, and the next pass finds again what the failed one left."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        run: Callable[[], object],
        *,
        at_start: bool = False,
        retried: tuple[type[Exception], ...] = (),
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.run = run
        self.at_start = at_start
        self.retried = retried
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ends after the pass in progress (which sees `stopping` set)."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        if not self.at_start and self.stopping.wait(self.interval_s):
            return
        while True:
            try:
                self.run()
            except self.retried as exc:
                log.warning("%s: trying again in %.0f s: %s", self.name, self.interval_s, exc)
            except Exception:  # a bug, or a disk problem: logged, and the job goes on
                log.exception("%s: a pass failed", self.name)
            if self.stopping.wait(self.interval_s):
                return
