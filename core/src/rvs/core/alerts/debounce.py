"""One alert per track: a person in front of a camera for a minute raises one alert, not sixty.

A track is keyed by (watch id, place): a stream is one time line ("stream:<name>"), a file is its
own (its media id). Times are wall-clock "seen at" ms. A sighting within `gap_ms` of the key's last
one continues its track; one after a longer absence starts a new track, and raises. Unknown faces
have no watch id: at each place the recent unknown faces' vectors are kept, and a face that matches
one of them (the model's threshold) within the gap is the same unknown track.

Changes are tentative until `commit()` (the batch's alerts are on the bus) and `rollback()` drops
them (the batch is delivered again and must raise its alerts again). Memory is bounded: the least
recently seen keys and places go first, and an unknown track ends with its gap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

STREAM_PLACE = "stream:"  # Frame.source of a live stream's segments, and the prefix of its place


def frame_place(stream: str, media_id: str) -> str:
    """Where a frame's tracks live: its stream (every segment of it), else its media item."""
    return STREAM_PLACE + stream if stream else media_id


def alert_place(source: str, media_id: str) -> str:
    """The place of an alert raised before: a stream's alerts carry its source, stream:<name>."""
    return source if source.startswith(STREAM_PLACE) else media_id


@dataclass(frozen=True)
class UnknownTrack:
    vector: np.ndarray  # the latest face's: a track drifts as the person turns
    last_seen_ms: int


class Debouncer:
    def __init__(self, gap_ms: int, max_keys: int = 100_000, max_places: int = 10_000, max_unknown: int = 32) -> None:
        self.gap_ms = gap_ms
        self.max_keys, self.max_places, self.max_unknown = max_keys, max_places, max_unknown
        self._lock = threading.Lock()
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._unknown: OrderedDict[str, list[UnknownTrack]] = OrderedDict()
        self._pending_last: dict[tuple[str, str], int] = {}
        self._pending_unknown: dict[str, list[UnknownTrack]] = {}

    def seen(self, watch_id: str, where: str, seen_at_ms: int) -> bool:
        """A sighting of a watched person; True if it starts a track (raise an alert)."""
        key = (watch_id, where)
        with self._lock:
            last = self._pending_last.get(key, self._last.get(key))
            self._pending_last[key] = seen_at_ms if last is None else max(last, seen_at_ms)
            return last is None or abs(seen_at_ms - last) > self.gap_ms

    def seen_unknown(self, where: str, vector: np.ndarray, seen_at_ms: int, threshold: float) -> bool:
        """A face nobody knows; True if it is no recent unknown face at this place (raise an alert)."""
        with self._lock:
            tracks = self._pending_unknown.get(where)
            if tracks is None:
                tracks = list(self._unknown.get(where, ()))
            tracks = [t for t in tracks if abs(seen_at_ms - t.last_seen_ms) <= self.gap_ms]
            scores = [float(t.vector @ vector) if t.vector.shape == vector.shape else -1.0 for t in tracks]
            same = int(np.argmax(scores)) if scores and max(scores) >= threshold else None
            if same is not None:
                del tracks[same]
            tracks.append(UnknownTrack(vector, seen_at_ms))
            self._pending_unknown[where] = tracks[-self.max_unknown :]
            return same is None

    def seed(self, watch_id: str, where: str, seen_at_ms: int) -> None:
        """An alert already raised (folded from the bus, after a restart or by another embedder):
        its track goes on from there."""
        key = (watch_id, where)
        with self._lock:
            self._last[key] = max(self._last.get(key, seen_at_ms), seen_at_ms)
            self._last.move_to_end(key)
            _bound(self._last, self.max_keys)

    def commit(self) -> None:
        with self._lock:
            for key, seen_at_ms in self._pending_last.items():
                self._last[key] = max(self._last.get(key, seen_at_ms), seen_at_ms)
                self._last.move_to_end(key)
            for where, tracks in self._pending_unknown.items():
                self._unknown[where] = tracks
                self._unknown.move_to_end(where)
            _bound(self._last, self.max_keys)
            _bound(self._unknown, self.max_places)
            self._clear_pending()

    def rollback(self) -> None:
        with self._lock:
            self._clear_pending()

    def _clear_pending(self) -> None:
        self._pending_last.clear()
        self._pending_unknown.clear()


def _bound(entries: OrderedDict, most: int) -> None:  # type: ignore[type-arg]
    while len(entries) > most:
        entries.popitem(last=False)
