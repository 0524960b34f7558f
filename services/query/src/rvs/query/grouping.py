"""From face hits to the answer: photos ranked by score, videos as the tracks that match."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rvs.core.store.faces import FaceHit
from rvs.core.tracks import Track
from rvs.query.timeline import stamp
from rvs.v1 import rvs_pb2 as pb


def _box(b: tuple[float, float, float, float]) -> pb.Box:
    return pb.Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3])


def best_per_frame(hits: Iterable[FaceHit]) -> list[FaceHit]:
    """One person is at most one face of a frame: keep the best-scoring face per (media, time)."""
    best: dict[tuple[str, int], FaceHit] = {}
    for h in hits:
        key = (h.media_id, h.time_ms)
        if key not in best or h.score > best[key].score:
            best[key] = h
    return list(best.values())


def image_hits(
    hits: Iterable[FaceHit],
    top_k: int,
    catalog: dict[str, pb.Media] | None = None,
    min_score: float = -1.0,
    newest: bool = False,
) -> list[pb.ImageHit]:
    """The top photos among the hits at or above min_score (videos' hits are left out), best first
    (`newest`: the most recently discovered first)."""
    catalog = catalog or {}
    images = [
        (
            h.ingested_at_ms,
            pb.ImageHit(
                media_id=h.media_id,
                uri=entry.uri if (entry := catalog.get(h.media_id)) else h.uri,
                score=h.score,
                box=_box(h.box),
                face_id=h.key,
            ),
        )
        for h in best_per_frame(hits)
        if h.kind == pb.MEDIA_KIND_IMAGE and h.score >= min_score
    ]
    if newest:
        images.sort(key=lambda pair: (-pair[0], pair[1].uri))
    else:
        images.sort(key=lambda pair: (-pair[1].score, pair[1].uri))
    return [image for _, image in images[:top_k]]


@dataclass(frozen=True)
class Evidence:
    """When a track matches: its template (the mean of its faces) reaches min_score, and the track
    has `min_samples` samples, or its best sample alone is a strong match (at least min_score +
    strong_margin). A stranger who grazes the threshold in one sample is not a hit, and a person
    whose every sample is a little under it, in a long track, is."""

    min_score: float
    min_samples: int
    strong_margin: float

    def holds(self, track_score: float, best: float, samples: int) -> bool:
        if track_score < self.min_score:
            return False
        return samples >= self.min_samples or best >= self.min_score + self.strong_margin


class Rejections:
    """ "Not this person": examples the user rejected (face vectors, track templates) and their ids.
    A face or track closer to one of them than to the query is not returned."""

    def __init__(self, vectors: Sequence[np.ndarray] = (), face_ids: Iterable[str] = (), track_ids: Iterable[str] = ()):
        self.vectors = np.stack(vectors) if len(vectors) else None
        self.face_ids = frozenset(face_ids)
        self.track_ids = frozenset(track_ids)

    def __bool__(self) -> bool:
        return self.vectors is not None

    def closer(self, vector: np.ndarray, query_score: float) -> bool:
        return self.vectors is not None and float(np.max(self.vectors @ vector)) > query_score

    def track(self, track: Track, query_score: float) -> bool:
        if track.id in self.track_ids or any(f.key in self.face_ids for f in track.faces):
            return True
        return self.closer(track.template, query_score)


def track_segment(
    track: Track, query: np.ndarray, interval_ms: int, duration_ms: int, evidence: Evidence, always: bool = False
) -> pb.Segment | None:
    """The track as a segment of the answer, or None if it is not a match for `query` (`always`: a
    person's own track, shown whatever the evidence)."""
    scores = track.vectors @ query
    best_at = int(np.argmax(scores))
    best = float(scores[best_at])
    track_score = float(track.template @ query)
    if not always and not evidence.holds(track_score, best, len(track.faces)):
        return None
    face = track.faces[best_at]
    return pb.Segment(
        start_ms=track.start_ms,
        end_ms=track.end_ms(interval_ms, duration_ms),
        best_score=min(best, 1.0),
        best_time_ms=face.time_ms,
        best_box=_box(face.box),
        track_id=track.id,
        track_score=min(track_score, 1.0),
        samples=len(track.faces),
        matching_samples=int(np.count_nonzero(scores >= evidence.min_score)),
        best_face_id=face.key,
    )


def video_hit(
    entry: pb.Media,
    tracks: Iterable[Track],
    query: np.ndarray,
    interval_ms: int,
    evidence: Evidence,
    rejected: Rejections,
) -> pb.VideoHit | None:
    """The video's matching tracks as one hit (None: no track matches), segments in time order, with
    their wall-clock times."""
    segments = []
    for track in tracks:
        segment = track_segment(track, query, interval_ms, entry.duration_ms, evidence)
        if segment is not None and not rejected.track(track, segment.track_score):
            segments.append(segment)
    if not segments:
        return None
    segments.sort(key=lambda s: (s.start_ms, s.track_id))
    hit = pb.VideoHit(
        media_id=entry.media_id,
        uri=entry.uri,
        duration_ms=entry.duration_ms,
        best_score=max(s.best_score for s in segments),
        track_score=max(s.track_score for s in segments),
        segments=segments,
    )
    return stamp(hit, entry)
