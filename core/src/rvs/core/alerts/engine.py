"""The alert engine: the watch list, the debouncer and the alerts they raise for a batch's faces.

An alert's id is a hash of the watch and the face (media id, sample, face index), so the frame
evaluated again after a replay raises the same alert, which every fold and client keeps once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rvs.core.alerts.debounce import Debouncer, alert_place, frame_place
from rvs.core.alerts.watchlist import WatchList, is_watch_event, model_threshold
from rvs.core.clock import now_ms
from rvs.v1 import rvs_pb2 as pb

UNKNOWN = "unknown"  # the alert id's watch part for an unknown face


def alert_id(watch_id: str, media_id: str, sample_index: int, face_index: int) -> str:
    face = f"{watch_id or UNKNOWN}|{media_id}|{sample_index}|{face_index}"
    return hashlib.sha256(face.encode()).hexdigest()[:32]


def seen_at_ms(frame: pb.Frame) -> int:
    """Wall-clock time the frame shows: a stream segment's start (its ingested_at_ms), or a file's
    discovery, plus the frame's time in it."""
    return frame.ingested_at_ms + frame.time_ms


@dataclass(frozen=True)
class SeenFace:
    """A face just embedded: its frame, its place in it, its box in the original frame's pixels, its
    vector, and how to make its still (only a face that raises an alert needs one)."""

    frame: pb.Frame
    face_index: int
    box: tuple[float, float, float, float]
    vector: np.ndarray
    still: Callable[[], bytes]


class AlertEngine:
    """Folded from the bus (`apply`), asked for each batch's alerts (`evaluate`), told whether the
    batch's alerts are on the bus (`commit`) or the batch is delivered again (`rollback`)."""

    def __init__(
        self, gap_s: float, threshold: Callable[[str], float] = model_threshold, clock: Callable[[], int] = now_ms
    ) -> None:
        self.watches = WatchList(threshold)
        self.debounce = Debouncer(int(gap_s * 1000))
        self._clock = clock

    def apply(self, event: pb.MediaEvent) -> bool:
        """Fold a watch-list event, or an alert already raised (its track goes on); True if it was one."""
        if not is_watch_event(event):
            return False
        if event.HasField("alert_raised"):
            alert = event.alert_raised.alert
            if alert.kind == pb.ALERT_KIND_WATCH and alert.watch_id:
                self.debounce.seed(alert.watch_id, alert_place(alert.source, alert.media_id), alert.seen_at_ms)
            return True
        return self.watches.apply(event)

    def evaluate(self, model: str, faces: Sequence[SeenFace]) -> list[pb.Alert]:
        """The alerts these faces of `model` raise, earliest sighting first."""
        if not faces or (model not in self.watches.models() and not any(f.frame.alert_unknown for f in faces)):
            return []
        alerts = []
        for face in sorted(faces, key=lambda f: (seen_at_ms(f.frame), f.frame.media_id, f.frame.sample_index)):
            frame, at = face.frame, seen_at_ms(face.frame)
            where = frame_place(frame.stream, frame.media_id)
            verdict = self.watches.match(model, face.vector, unknown_too=frame.alert_unknown)
            if verdict.alert is not None:
                watch = verdict.alert.watch
                if self.debounce.seen(watch.watch_id, where, at):
                    alerts.append(self._alert(face, model, pb.ALERT_KIND_WATCH, watch, verdict.alert.score))
            elif frame.alert_unknown and not verdict.known:
                threshold = self.watches.threshold(model)
                if self.debounce.seen_unknown(where, np.asarray(face.vector, np.float32), at, threshold):
                    alerts.append(self._alert(face, model, pb.ALERT_KIND_UNKNOWN, None, 0.0))
        return alerts

    def _alert(self, face: SeenFace, model: str, kind: int, watch: pb.Watch | None, score: float) -> pb.Alert:
        frame, watch_id = face.frame, watch.watch_id if watch else ""
        x1, y1, x2, y2 = face.box
        return pb.Alert(
            alert_id=alert_id(watch_id, frame.media_id, frame.sample_index, face.face_index),
            kind=kind,  # type: ignore[arg-type]
            watch_id=watch_id,
            name=watch.name if watch else "",
            source=frame.source,
            media_id=frame.media_id,
            uri=frame.uri,
            time_ms=frame.time_ms,
            seen_at_ms=seen_at_ms(frame),
            score=score,
            box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2),
            still=face.still(),
            raised_at_ms=self._clock(),
            model=model,
        )

    def commit(self) -> None:
        self.debounce.commit()

    def rollback(self) -> None:
        self.debounce.rollback()


def alert_event(alert: pb.Alert) -> pb.MediaEvent:
    """The index-wide event an alert travels in (media_id "": every fold sees it in order)."""
    return pb.MediaEvent(at_ms=alert.raised_at_ms, alert_raised=pb.AlertRaised(alert=alert))
