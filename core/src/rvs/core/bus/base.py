from __future__ import annotations

from typing import Protocol

from rvs.core.clock import now_ms
from rvs.v1 import rvs_pb2 as pb


class BusClosed(RuntimeError):
    """The bus is shutting down; the caller stops publishing or polling."""


class BusUnavailable(RuntimeError):
    """The bus did not acknowledge what was published; the publisher tries again later."""


class FramePublisher(Protocol):
    def publish(self, frame: pb.Frame) -> None:
        """Queue one frame; blocks while the bus is full (back-pressure). Raises BusClosed."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Return once every published frame is acknowledged by the bus."""


class FrameConsumer(Protocol):
    def poll(self, max_frames: int, max_wait_s: float) -> list[pb.Frame]:
        """Up to `max_frames` frames, waiting at most `max_wait_s` to fill the batch."""

    def commit(self) -> None:
        """Everything returned by poll() so far has been processed (and written). Raises
        BusUnavailable if the bus did not acknowledge it: the caller rewinds and redoes the batch."""

    def rewind(self) -> None:
        """Everything returned by poll() since the last commit() was not processed: deliver it again."""

    def dead_letter(self, frame: pb.Frame, reason: str, detail: str) -> None:
        """Set aside a frame that cannot be processed, with the reason; acknowledged by commit()."""

    def close(self) -> None: ...


class EventPublisher(Protocol):
    def publish(self, event: pb.MediaEvent) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Return once every published event is recorded; raise BusUnavailable if one is not."""


class AlertPublisher(Protocol):
    """Alerts as bare messages, for consumers outside rvs (distributed mode's alerts topic)."""

    def publish(self, alert: pb.Alert) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Return once every published alert is recorded; raise BusUnavailable if one is not."""


def removal(media_id: str, expired: bool = False) -> pb.MediaEvent:
    """The event that removes a media item, stamped now: every service folds it (ingest stopped,
    frames dropped, faces deleted, catalog marked), and anything of that ingest older is ignored.
    `expired`: removed by retention, so its content is not ingested again."""
    return pb.MediaEvent(media_id=media_id, at_ms=now_ms(), removed=pb.MediaRemoved(expired=expired))
