"""Face tracks: one video's faces linked across consecutive samples.

Linking is a pure function of the faces of one video, in time order: every query service computes
the same tracks whichever embedder indexed which frame, and in whatever order the frames arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackedFace:
    key: str  # the face's id in the index (its primary key); "" for a face not indexed
    time_ms: int
    box: Box
    det_score: float
    vector: np.ndarray  # L2-normalised


@dataclass(frozen=True)
class LinkRules:
    """When a face continues a track rather than starting one."""

    interval_ms: int  # time between two samples
    min_score: float  # a face this similar to the track continues it wherever it is in the frame
    min_score_overlapping: float  # a looser bar for a face whose box overlaps the track's last one
    min_iou: float = 0.3  # boxes overlap: intersection over union at least this
    max_missed: int = 2  # samples a track may miss (face turned, occluded) and still continue


@dataclass
class Track:
    faces: list[TrackedFace] = field(default_factory=list)  # in time order, one per sample
    _sum: np.ndarray | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The id of the track's first face: stable once the video is indexed, and any face of the
        track finds it again (`find`)."""
        return self.faces[0].key

    @property
    def start_ms(self) -> int:
        return self.faces[0].time_ms

    @property
    def last_ms(self) -> int:
        return self.faces[-1].time_ms

    @property
    def template(self) -> np.ndarray:
        """The mean direction of the track's faces: steadier than any one sample of it."""
        assert self._sum is not None
        norm = float(np.linalg.norm(self._sum))
        return self._sum / norm if norm > 0 else self._sum

    @property
    def vectors(self) -> np.ndarray:
        return np.stack([f.vector for f in self.faces])

    def add(self, face: TrackedFace) -> None:
        self.faces.append(face)
        v = face.vector.astype(np.float32)
        self._sum = v.copy() if self._sum is None else self._sum + v

    def end_ms(self, interval_ms: int, duration_ms: int) -> int:
        """The end of the time it is seen: its last sample plus one interval, within the video."""
        end = self.last_ms + interval_ms
        return min(end, duration_ms) if duration_ms > self.last_ms else end

    def best_detection(self) -> TrackedFace:
        return max(self.faces, key=lambda f: (f.det_score, -f.time_ms))


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link(faces: Iterable[TrackedFace], rules: LinkRules) -> list[Track]:
    """The tracks of one video's faces, in order of their first sample.

    Sample by sample, each face joins the open track whose last face or template it is most similar
    to, where that similarity passes the bar (a lower one where the boxes overlap), or starts a
    track; a track takes one face per sample. Ties are broken by face key, so the result does not
    depend on the input's order."""
    ordered = sorted(faces, key=lambda f: (f.time_ms, f.key))
    # A sample may come a frame late or early: half an interval of slack on the gap.
    reach = (rules.max_missed + 1) * rules.interval_ms + rules.interval_ms // 2
    tracks: list[Track] = []
    open_tracks: list[Track] = []
    for time_ms, group in groupby(ordered, key=lambda f: f.time_ms):
        sample = list(group)
        open_tracks = [t for t in open_tracks if time_ms - t.last_ms <= reach]
        pairs = []
        for ti, track in enumerate(open_tracks):
            last = track.faces[-1]
            for fi, face in enumerate(sample):
                score = max(float(last.vector @ face.vector), float(track.template @ face.vector))
                overlap = iou(last.box, face.box)
                if score >= rules.min_score or (overlap >= rules.min_iou and score >= rules.min_score_overlapping):
                    pairs.append((-score, ti, face.key, fi))
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, ti, _, fi in sorted(pairs):
            if ti in taken_tracks or fi in taken_faces:
                continue
            open_tracks[ti].add(sample[fi])
            taken_tracks.add(ti)
            taken_faces.add(fi)
        for fi, face in enumerate(sample):
            if fi not in taken_faces:
                track = Track()
                track.add(face)
                tracks.append(track)
                open_tracks.append(track)
    return tracks


def find(tracks: Iterable[Track], face_key: str) -> Track | None:
    """The track that holds the face `face_key` (a track's id is the key of its first face)."""
    return next((t for t in tracks if any(f.key == face_key for f in t.faces)), None)
