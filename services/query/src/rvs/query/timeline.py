"""When a hit was seen, in wall-clock unix ms: the window a search keeps, and the newest-first order
("where and when was this person last seen?")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rvs.v1 import rvs_pb2 as pb


def time_zero_ms(entry: pb.Media) -> int:
    """Unix ms of the media item's time 0: a stream segment's start, else when it was discovered."""
    return entry.started_at_ms or entry.discovered_at_ms


def stamp(hit: pb.VideoHit, entry: pb.Media) -> pb.VideoHit:
    """Fill the hit's stream and the wall-clock times of its segments from its catalog entry."""
    zero = time_zero_ms(entry)
    hit.stream, hit.started_at_ms = entry.stream, entry.started_at_ms
    for segment in hit.segments:
        segment.start_at_ms, segment.end_at_ms = zero + segment.start_ms, zero + segment.end_ms
    return hit


@dataclass(frozen=True)
class Window:
    """[after_ms, before_ms) in unix ms; 0 leaves that end open."""

    after_ms: int = 0
    before_ms: int = 0

    def __bool__(self) -> bool:
        return bool(self.after_ms or self.before_ms)

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        """Whether [start_ms, end_ms) overlaps the window (a segment seen in it)."""
        return (not self.before_ms or start_ms < self.before_ms) and (not self.after_ms or end_ms > self.after_ms)

    def holds(self, at_ms: int) -> bool:
        return (not self.before_ms or at_ms < self.before_ms) and at_ms >= self.after_ms

    def clip(self, hit: pb.VideoHit) -> pb.VideoHit | None:
        """The hit with only its segments seen in the window (None: none is); scores follow them."""
        kept = [s for s in hit.segments if self.overlaps(s.start_at_ms, s.end_at_ms)]
        if not kept:
            return None
        if len(kept) < len(hit.segments):
            del hit.segments[:]
            hit.segments.extend(kept)
            hit.best_score = max(s.best_score for s in kept)
            hit.track_score = max(s.track_score for s in kept)
        return hit


def last_seen_ms(hit: pb.VideoHit) -> int:
    return max(s.end_at_ms for s in hit.segments)


def newest_first(videos: Iterable[pb.VideoHit]) -> list[pb.VideoHit]:
    """Videos by their newest segment's end, newest first; each one's segments newest first."""
    ordered = sorted(videos, key=lambda v: (-last_seen_ms(v), v.uri))
    for hit in ordered:
        segments = sorted(hit.segments, key=lambda s: (-s.end_at_ms, -s.start_at_ms, s.track_id))
        del hit.segments[:]
        hit.segments.extend(segments)
    return ordered
