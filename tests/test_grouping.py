"""From face hits and tracks to the answer (rvs.query.grouping): pure, no models or servers."""

from __future__ import annotations

import numpy as np
import pytest

from rvs.core.store.faces import FaceHit, face_key
from rvs.core.tracks import Track, TrackedFace
from rvs.query.grouping import Evidence, Rejections, best_per_frame, image_hits, track_segment, video_hit
from rvs.v1 import rvs_pb2 as pb

VIDEO, IMAGE = pb.MEDIA_KIND_VIDEO, pb.MEDIA_KIND_IMAGE
EVIDENCE = Evidence(min_score=0.5, min_samples=2, strong_margin=0.1)
QUERY = np.eye(8, dtype=np.float32)[0]


def hit(media: str, t: int, score: float, kind: int = VIDEO, face: int = 0) -> FaceHit:
    return FaceHit(face_key(media, t, face), media, f"/m/{media}", kind, t, (1, 2, 3, 4), 0.99, "/m", score)


def scored(score: float, axis: int = 1) -> np.ndarray:
    """A unit vector whose similarity to QUERY is `score`, the rest along another axis."""
    v = np.zeros(8, dtype=np.float32)
    v[0], v[axis] = score, np.sqrt(1 - score**2)
    return v


def track(scores: list[float], start_ms: int = 0, media: str = "v", spread: bool = False) -> Track:
    """A track of samples 1 s apart whose faces score `scores` against QUERY; `spread`: each face's
    difference from the query lies along its own axis (independent noise), not all along one."""
    one = Track()
    for k, s in enumerate(scores):
        t = start_ms + k * 1000
        one.add(TrackedFace(face_key(media, t, 0), t, (0, 0, 10, 10), 0.9, scored(s, 1 + k % 7 if spread else 1)))
    return one


def test_face_key_is_deterministic_and_distinct() -> None:
    assert face_key("abc", 1000, 0) == face_key("abc", 1000, 0)
    keys = {face_key(m, t, f) for m in ("a", "b") for t in (0, 1000, 10000) for f in (0, 1, 10)}
    assert len(keys) == 18


def test_one_match_per_frame() -> None:
    hits = [hit("v", 1000, 0.91, face=0), hit("v", 1000, 0.97, face=1), hit("v", 2000, 0.9)]
    best = {(h.time_ms): h.score for h in best_per_frame(hits)}
    assert best == {1000: 0.97, 2000: 0.9}


def test_photos_ranked_with_their_face_ids_and_top_k_and_videos_left_out() -> None:
    hits = [hit("p1", 0, 0.91, IMAGE), hit("p2", 0, 0.99, IMAGE), hit("p3", 0, 0.95, IMAGE), hit("v1", 0, 0.98)]
    images = image_hits(hits, top_k=2)
    assert [i.media_id for i in images] == ["p2", "p3"]
    assert images[0].face_id == face_key("p2", 0, 0)
    catalog = {"p2": pb.Media(media_id="p2", uri="/renamed.jpg")}
    assert image_hits(hits, 1, catalog)[0].uri == "/renamed.jpg"
    assert image_hits([], 10) == []


def test_one_weak_sample_of_a_long_track_is_not_a_hit() -> None:
    assert track_segment(track([0.3, 0.52, 0.35, 0.3]), QUERY, 1000, 10_000, EVIDENCE) is None


def test_a_track_is_judged_by_its_template() -> None:
    # Every sample a little under the threshold, each off in its own way: their mean is the person.
    steady = track([0.45, 0.47, 0.46, 0.48], spread=True)
    segment = track_segment(steady, QUERY, 1000, 10_000, EVIDENCE)
    assert segment is not None and segment.matching_samples == 0 and segment.track_score > 0.5


def test_one_sample_alone_matches_only_when_strong() -> None:
    assert track_segment(track([0.55]), QUERY, 1000, 10_000, EVIDENCE) is None
    strong = track_segment(track([0.62]), QUERY, 1000, 10_000, EVIDENCE)
    assert strong is not None and strong.samples == strong.matching_samples == 1
    assert track_segment(track([0.55, 0.55]), QUERY, 1000, 10_000, EVIDENCE) is not None


def test_a_segment_spans_the_whole_track_and_ends_one_interval_after_it() -> None:
    t = track([0.3, 0.8, 0.9, 0.6, 0.2], start_ms=2000)
    seg = track_segment(t, QUERY, 1000, 60_000, EVIDENCE)
    assert seg is not None
    assert (seg.start_ms, seg.end_ms) == (2000, 7000)  # last sample 6000 + one interval
    assert (seg.best_time_ms, seg.best_score) == (4000, pytest.approx(0.9))
    assert seg.best_face_id == face_key("v", 4000, 0) and seg.track_id == t.id == face_key("v", 2000, 0)
    assert (seg.samples, seg.matching_samples) == (5, 3)
    assert seg.track_score == pytest.approx(float(t.template @ QUERY))
    clipped = track_segment(t, QUERY, 1000, 6500, EVIDENCE)
    assert clipped is not None and clipped.end_ms == 6500  # a person seen to the end of the clip


def test_a_video_hit_lists_its_matching_tracks_in_time_order() -> None:
    entry = pb.Media(media_id="v", uri="/v.mp4", duration_ms=30_000)
    tracks = [track([0.9, 0.9], start_ms=10_000), track([0.3, 0.3], start_ms=0), track([0.7, 0.7], start_ms=1000)]
    found = video_hit(entry, tracks, QUERY, 1000, EVIDENCE, Rejections())
    assert found is not None
    assert [(s.start_ms, s.end_ms) for s in found.segments] == [(1000, 3000), (10_000, 12_000)]
    assert found.best_score == pytest.approx(0.9) and found.track_score == pytest.approx(0.9)
    assert found.uri == "/v.mp4" and found.duration_ms == 30_000
    assert video_hit(entry, tracks[1:2], QUERY, 1000, EVIDENCE, Rejections()) is None


def test_rejected_tracks_and_what_is_closer_to_a_rejection_are_left_out() -> None:
    entry = pb.Media(media_id="v", duration_ms=30_000)
    mine, lookalike = track([0.9, 0.9], start_ms=0), track([0.6, 0.6], start_ms=5000)
    # The lookalike's faces lie along the second axis too: an example there is closer to it than the query.
    example = np.eye(8, dtype=np.float32)[1]
    kept = video_hit(entry, [mine, lookalike], QUERY, 1000, EVIDENCE, Rejections([example]))
    assert kept is not None and [s.track_id for s in kept.segments] == [mine.id]
    by_id = video_hit(entry, [mine, lookalike], QUERY, 1000, EVIDENCE, Rejections(track_ids=[mine.id]))
    assert by_id is not None and [s.track_id for s in by_id.segments] == [lookalike.id]
    by_face = Rejections(face_ids=[lookalike.faces[1].key])
    assert by_face.track(lookalike, 0.6) and not by_face.track(mine, 0.9)
