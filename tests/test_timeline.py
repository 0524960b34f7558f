"""Search by time (rvs.query.timeline, the store's window filter, the options' parsing): pure, no
models or servers."""

from __future__ import annotations

from datetime import datetime

import pytest

from rvs.core.instants import MAX_UNIX_MS, parse_instant
from rvs.core.store.faces import FaceHit, SearchFilter, face_key
from rvs.query.grouping import image_hits
from rvs.query.timeline import Window, newest_first, stamp
from rvs.query.web.errors import ApiError
from rvs.query.web.parsing import search_request
from rvs.v1 import rvs_pb2 as pb

T0 = 1_764_633_600_000  # 2025-12-02T00:00:00Z


def segment(start_ms: int, end_ms: int, score: float = 0.7, track: str = "") -> pb.Segment:
    return pb.Segment(
        start_ms=start_ms, end_ms=end_ms, best_score=score, track_score=score, track_id=track or f"t{start_ms}"
    )


def video(media_id: str, zero_ms: int, *segments: pb.Segment, stream: str = "") -> pb.VideoHit:
    entry = pb.Media(media_id=media_id, uri=f"/v/{media_id}", stream=stream, discovered_at_ms=zero_ms)
    if stream:
        entry.started_at_ms = zero_ms
    return stamp(pb.VideoHit(media_id=media_id, uri=entry.uri, segments=segments), entry)


def test_segments_get_the_wall_clock_times_of_their_media() -> None:
    streamed = video("s", T0, segment(2000, 5000), stream="cam1")
    assert (streamed.stream, streamed.started_at_ms) == ("cam1", T0)
    assert [(s.start_at_ms, s.end_at_ms) for s in streamed.segments] == [(T0 + 2000, T0 + 5000)]
    # A file's time 0 is its discovery; it has no stream start.
    filed = video("f", T0 + 60_000, segment(0, 1000))
    assert (filed.stream, filed.started_at_ms) == ("", 0)
    assert [(s.start_at_ms, s.end_at_ms) for s in filed.segments] == [(T0 + 60_000, T0 + 61_000)]


@pytest.mark.parametrize(
    ("start", "end", "inside"),
    [
        (T0 - 2000, T0, False),  # ends as the window begins
        (T0 - 2000, T0 + 1, True),
        (T0 + 5000, T0 + 20_000, True),  # runs past its end
        (T0 + 10_000, T0 + 11_000, False),  # begins as it ends
        (T0 - 5000, T0 + 50_000, True),  # spans it
    ],
)
def test_the_window_keeps_segments_that_overlap_it(start: int, end: int, inside: bool) -> None:
    window = Window(T0, T0 + 10_000)
    assert window.overlaps(start, end) is inside
    assert Window(T0, 0).overlaps(start, end) is (end > T0)  # open at its end
    assert Window(0, 0).overlaps(start, end) and not Window()


def test_a_window_clips_a_video_to_its_segments_and_their_scores() -> None:
    hit = video("v", T0, segment(0, 2000, 0.9), segment(60_000, 62_000, 0.6), segment(120_000, 121_000, 0.7))
    clipped = Window(T0 + 30_000, T0 + 150_000).clip(hit)
    assert clipped is not None
    assert [s.start_ms for s in clipped.segments] == [60_000, 120_000]
    assert clipped.best_score == pytest.approx(0.7) and clipped.track_score == pytest.approx(0.7)
    assert Window(T0 + 200_000, 0).clip(hit) is None
    assert Window(T0 + 30_000, T0 + 150_000).holds(T0 + 30_000)
    assert not Window(T0 + 30_000, T0 + 150_000).holds(T0 + 150_000)


def test_newest_first_orders_videos_by_their_last_sighting_and_segments_within() -> None:
    old = video("old", T0, segment(0, 1000, 0.95), segment(5000, 9000, 0.6))
    new = video("new", T0 + 3_600_000, segment(1000, 2000, 0.55))
    middle = video("mid", T0 + 60_000, segment(0, 1000), segment(3000, 4000), stream="cam1")
    ordered = newest_first([old, middle, new])
    assert [v.media_id for v in ordered] == ["new", "mid", "old"]
    assert [s.start_ms for s in ordered[2].segments] == [5000, 0]
    assert all(a.end_at_ms >= b.end_at_ms for v in ordered for a, b in zip(v.segments, v.segments[1:], strict=False))


def photo(media: str, score: float, seen_ms: int) -> FaceHit:
    key = face_key(media, 0, 0)
    return FaceHit(key, media, f"/p/{media}", pb.MEDIA_KIND_IMAGE, 0, (1, 2, 3, 4), 0.99, "/p", score, seen_ms)


def test_photos_newest_first_by_discovery_top_k_of_the_newest() -> None:
    hits = [photo("a", 0.9, T0), photo("b", 0.6, T0 + 2000), photo("c", 0.7, T0 + 1000)]
    assert [i.media_id for i in image_hits(hits, 3)] == ["a", "c", "b"]
    assert [i.media_id for i in image_hits(hits, 2, newest=True)] == ["b", "c"]


def test_the_store_filter_prefilters_a_window_per_kind() -> None:
    image, video_kind = pb.MEDIA_KIND_IMAGE, pb.MEDIA_KIND_VIDEO
    both = SearchFilter(seen_after_ms=T0, seen_before_ms=T0 + 10, longest_video_ms=60_000).expression()
    assert both == (
        f"((kind == {image} and ingested_at_ms >= {T0} and ingested_at_ms < {T0 + 10}) or "
        f"(kind != {image} and ingested_at_ms > {T0 - 60_000} and ingested_at_ms < {T0 + 10}))"
    )
    # Without the longest video's length, a video that began any time before the window may reach it.
    after = SearchFilter(kind=video_kind, seen_after_ms=T0).expression()
    assert after == f"kind == {video_kind} and ((kind == {image} and ingested_at_ms >= {T0}) or kind != {image})"
    assert SearchFilter().expression() == ""


def test_times_parse_from_unix_ms_and_iso_8601() -> None:
    assert parse_instant("1764633600000") == T0
    assert parse_instant("2025-12-02T00:00:00Z") == T0
    assert parse_instant("2025-12-02T01:00:00+01:00") == T0
    naive = datetime(2025, 12, 2, 8, 30).timestamp() * 1000  # local time
    assert parse_instant(" 2025-12-02T08:30 ") == round(naive)
    assert parse_instant(str(MAX_UNIX_MS)) == MAX_UNIX_MS
    for bad in ("yesterday", "", "-5", str(MAX_UNIX_MS + 1), "1969-12-31T00:00:00Z"):
        with pytest.raises(ValueError, match="not a time"):
            parse_instant(bad)


def test_the_page_api_reads_the_order_and_the_window() -> None:
    request = search_request({"order": "newest", "seen_after": "2025-12-02T00:00:00Z", "seen_before": str(T0 + 5)})
    assert (request.order, request.seen_after_ms, request.seen_before_ms) == (pb.SEARCH_ORDER_NEWEST, T0, T0 + 5)
    assert search_request({}).order == pb.SEARCH_ORDER_SCORE
    for params in ({"order": "oldest"}, {"seen_after": "soon"}, {"seen_before": "1e9"}):
        with pytest.raises(ApiError) as err:
            search_request(params)
        assert err.value.reason == "INVALID_PARAMETER"
