"""From face hits to the answer: photos ranked by score, videos with merged time segments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from rvs.core.store.faces import FaceHit
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


def merge_segments(hits: list[FaceHit], max_gap_ms: int) -> list[pb.Segment]:
    """Merge the matching samples of one video into segments; samples closer than max_gap_ms join."""
    segments: list[pb.Segment] = []
    for h in sorted(hits, key=lambda h: h.time_ms):
        if segments and h.time_ms - segments[-1].end_ms <= max_gap_ms:
            seg = segments[-1]
            seg.end_ms = h.time_ms
            if h.score > seg.best_score:
                seg.best_score, seg.best_time_ms = h.score, h.time_ms
                seg.best_box.CopyFrom(_box(h.box))
        else:
            segments.append(
                pb.Segment(
                    start_ms=h.time_ms,
                    end_ms=h.time_ms,
                    best_score=h.score,
                    best_time_ms=h.time_ms,
                    best_box=_box(h.box),
                )
            )
    return segments


def group_hits(
    hits: list[FaceHit],
    top_k: int,
    max_gap_ms: int,
    catalog: dict[str, pb.Media] | None = None,
) -> tuple[list[pb.ImageHit], list[pb.VideoHit]]:
    """Top photos and top videos (by best score); `catalog` supplies current uris and durations."""
    catalog = catalog or {}
    images: list[pb.ImageHit] = []
    by_video: dict[str, list[FaceHit]] = defaultdict(list)
    for h in best_per_frame(hits):
        if h.kind == pb.MEDIA_KIND_IMAGE:
            entry = catalog.get(h.media_id)
            images.append(
                pb.ImageHit(media_id=h.media_id, uri=entry.uri if entry else h.uri, score=h.score, box=_box(h.box))
            )
        else:
            by_video[h.media_id].append(h)
    images.sort(key=lambda i: (-i.score, i.uri))
    videos = []
    for media_id, vhits in by_video.items():
        entry = catalog.get(media_id)
        videos.append(
            pb.VideoHit(
                media_id=media_id,
                uri=entry.uri if entry else vhits[0].uri,
                duration_ms=entry.duration_ms if entry else 0,
                best_score=max(h.score for h in vhits),
                segments=merge_segments(vhits, max_gap_ms),
            )
        )
    videos.sort(key=lambda v: (-v.best_score, v.uri))
    return images[:top_k], videos[:top_k]
