"""Helpers for tests that watch what a service publishes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rvs.v1 import rvs_pb2 as pb


class Recorder:
    """An EventPublisher that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[pb.MediaEvent] = []
        self._lock = threading.Lock()

    def publish(self, event: pb.MediaEvent) -> None:
        with self._lock:
            self.events.append(event)

    def flush(self, timeout_s: float | None = None) -> None:
        """Kept as published: nothing to wait for."""

    def of(self, kind: str) -> list[pb.MediaEvent]:
        with self._lock:
            return [e for e in self.events if e.WhichOneof("event") == kind]


def wait_for(check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")
