"""The tracks of indexed videos: linked at query time from a video's faces, kept while it is unchanged.

Why at query time: with several embedders, one video's frames are embedded on different partitions,
in any order, and a frame may be replayed. Linking the faces of the whole video when a search needs
them gives one answer whichever embedder got which frame, needs no step that waits for a video's
last frame, and a change of the linking rules applies to the whole index at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from rvs.core.store.faces import FaceStore, StoredFace
from rvs.core.tracks import LinkRules, Track, TrackedFace, link
from rvs.v1 import rvs_pb2 as pb

DEFAULT_INTERVAL_MS = 1000  # 1 fps, for media catalogued before the sampler recorded its interval


def sample_interval_ms(entry: pb.Media | None) -> int:
    """Time between two samples of a video, as the sampler recorded it (or estimated from older
    entries: the duration over the samples)."""
    if entry is None:
        return DEFAULT_INTERVAL_MS
    if entry.sample_interval_ms:
        return entry.sample_interval_ms
    if entry.duration_ms and entry.frames_sampled > 1:
        return max(1, round(entry.duration_ms / entry.frames_sampled))
    return DEFAULT_INTERVAL_MS


def tracked(face: StoredFace) -> TrackedFace:
    return TrackedFace(face.key, face.time_ms, face.box, face.det_score, face.vector)


def media_of(face_id: str) -> str:
    """The media id inside a face id (`media_id:time_ms:face_index`)."""
    return face_id.rsplit(":", 2)[0]


class VideoTracks:
    """Tracks per (collection, video), least recently used dropped first beyond `max_faces` faces.

    A video's tracks are kept while its catalog entry says nothing changed (faces still arriving
    change it); without a catalog entry they are linked afresh each time."""

    def __init__(self, rules: Callable[[int], LinkRules], max_faces: int) -> None:
        self._rules = rules
        self._max_faces = max_faces
        self._kept: OrderedDict[tuple[str, str], tuple[tuple[int, ...], list[Track], int]] = OrderedDict()
        self._faces = 0
        self._lock = threading.Lock()

    def get(self, store: FaceStore, media_id: str, entry: pb.Media | None) -> list[Track]:
        key = (store.collection, media_id)
        stamp = _stamp(entry)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and stamp is not None and kept[0] == stamp:
                self._kept.move_to_end(key)
                return kept[1]
        faces = store.faces_of(media_id)
        tracks = link(map(tracked, faces), self._rules(sample_interval_ms(entry)))
        if stamp is not None:
            self._keep(key, stamp, tracks, len(faces))
        return tracks

    def _keep(self, key: tuple[str, str], stamp: tuple[int, ...], tracks: list[Track], faces: int) -> None:
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._faces -= old[2]
            if faces > self._max_faces:
                return
            self._kept[key] = (stamp, tracks, faces)
            self._faces += faces
            while self._faces > self._max_faces:
                _, (_, _, n) = self._kept.popitem(last=False)
                self._faces -= n


def _stamp(entry: pb.Media | None) -> tuple[int, ...] | None:
    if entry is None:
        return None
    return (entry.state, entry.frames_embedded, entry.faces_found, entry.updated_at_ms)
