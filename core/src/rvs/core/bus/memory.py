"""In-process transport for embedded mode: a bounded queue (back-pressure, no broker)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque

from rvs.core.bus.base import BusClosed
from rvs.v1 import rvs_pb2 as pb


class MemoryFrameBus:
    """A bounded frame queue with a publisher side and a consumer side."""

    def __init__(self, capacity: int = 64) -> None:
        self._queue: queue.Queue[pb.Frame] = queue.Queue(maxsize=capacity)
        self._closed = threading.Event()
        # Consumer side (the embedder's thread only): frames polled since the last commit, and
        # frames given back by rewind(), delivered before anything newer.
        self._in_hand: list[pb.Frame] = []
        self._again: deque[pb.Frame] = deque()

    def publish(self, frame: pb.Frame) -> None:
        while True:
            if self._closed.is_set():
                raise BusClosed("frame bus closed")
            try:
                self._queue.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue

    def flush(self, timeout_s: float | None = None) -> None:
        """Frames are handed over in memory: nothing to wait for."""

    def poll(self, max_frames: int, max_wait_s: float) -> list[pb.Frame]:
        deadline = time.monotonic() + max_wait_s
        batch: list[pb.Frame] = []
        while self._again and len(batch) < max_frames:
            batch.append(self._again.popleft())
        while len(batch) < max_frames:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())
                else:
                    batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        self._in_hand += batch
        return batch

    def commit(self) -> None:
        self._in_hand.clear()

    def rewind(self) -> None:
        """Put the frames polled since the last commit back at the front, in their order."""
        self._again.extendleft(reversed(self._in_hand))
        self._in_hand.clear()

    def dead_letter(self, frame: pb.Frame, reason: str, detail: str) -> None:
        """In memory there is nowhere to keep the frame: the embedder's log line and
        rvs_frames_failed_total{reason} are its record."""

    def pending(self) -> int:
        return self._queue.qsize() + len(self._again)

    def close(self) -> None:
        self._closed.set()
