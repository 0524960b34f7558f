from __future__ import annotations

import pytest

from rvs.core.store.faces import FaceHit, face_key
from rvs.query.grouping import best_per_frame, group_hits, merge_segments
from rvs.v1 import rvs_pb2 as pb

VIDEO, IMAGE = pb.MEDIA_KIND_VIDEO, pb.MEDIA_KIND_IMAGE


def hit(media: str, t: int, score: float, kind: int = VIDEO, face: int = 0) -> FaceHit:
    return FaceHit(face_key(media, t, face), media, f"/m/{media}", kind, t, (1, 2, 3, 4), 0.99, "/m", score)


def test_face_key_is_deterministic_and_distinct() -> None:
    assert face_key("abc", 1000, 0) == face_key("abc", 1000, 0)
    keys = {face_key(m, t, f) for m in ("a", "b") for t in (0, 1000, 10000) for f in (0, 1, 10)}
    assert len(keys) == 18


def test_adjacent_samples_merge_and_gaps_split() -> None:
    hits = [hit("v", t, 0.9) for t in (2000, 3000, 4000, 5000, 9000, 10000)]
    segs = merge_segments(hits, max_gap_ms=1500)
    assert [(s.start_ms, s.end_ms) for s in segs] == [(2000, 5000), (9000, 10000)]


def test_segment_keeps_best_score_time_and_box() -> None:
    hits = [hit("v", 0, 0.8), hit("v", 1000, 0.95), hit("v", 2000, 0.9)]
    (seg,) = merge_segments(hits, 1500)
    assert seg.best_time_ms == 1000
    assert seg.best_score == pytest.approx(0.95)


def test_unsorted_input_and_larger_gap() -> None:
    hits = [hit("v", t, 0.9) for t in (9000, 2000, 4000)]
    assert [(s.start_ms, s.end_ms) for s in merge_segments(hits, 2000)] == [(2000, 4000), (9000, 9000)]


def test_one_match_per_frame() -> None:
    hits = [hit("v", 1000, 0.91, face=0), hit("v", 1000, 0.97, face=1), hit("v", 2000, 0.9)]
    best = {(h.time_ms): h.score for h in best_per_frame(hits)}
    assert best == {1000: 0.97, 2000: 0.9}


def test_group_ranks_photos_and_videos_and_applies_top_k() -> None:
    hits = [hit("p1", 0, 0.91, IMAGE), hit("p2", 0, 0.99, IMAGE), hit("p3", 0, 0.95, IMAGE)]
    hits += [hit("v1", t, 0.92) for t in (0, 1000)] + [hit("v2", 5000, 0.98)]
    images, videos = group_hits(hits, top_k=2, max_gap_ms=1500)
    assert [i.media_id for i in images] == ["p2", "p3"]
    assert [v.media_id for v in videos] == ["v2", "v1"]
    assert videos[1].segments[0].start_ms == 0 and videos[1].segments[0].end_ms == 1000


def test_catalog_supplies_current_uri_and_duration() -> None:
    catalog = {"v1": pb.Media(media_id="v1", uri="/renamed.mp4", duration_ms=60000)}
    _, videos = group_hits([hit("v1", 0, 0.9)], 10, 1500, catalog)
    assert videos[0].uri == "/renamed.mp4" and videos[0].duration_ms == 60000


def test_no_hits_no_results() -> None:
    assert group_hits([], 10, 1500) == ([], [])
