"""SearchByVideo's limits, checked before any face model runs (fast: a clip made here, no models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.rpc import code_pb2
from pydantic import ValidationError

from rvs.query.clip_search import ClipSearch, describe_clip_error
from rvs.query.config import QuerySettings
from rvs.query.search import SearchEngine
from rvs.v1 import rvs_pb2 as pb

from fake_pipeline import FakePipeline, MemoryFaceStore
from media_factory import cfr_times, write_video


def clip_search(**settings: object) -> ClipSearch:
    s = QuerySettings(min_score=0.5, **settings)  # type: ignore[arg-type]
    engine = SearchEngine(s, FakePipeline(faces=1), MemoryFaceStore())  # type: ignore[arg-type]
    return ClipSearch(s, engine)


def reason(search: ClipSearch, request: pb.SearchByVideoRequest) -> tuple[int, str]:
    with pytest.raises(Exception) as err:
        search.search(request)
    described = describe_clip_error(err.value)
    assert described is not None, err.value
    return described[0], described[1]


def test_too_large_too_long_and_empty_clips_are_refused_before_analysis(tmp_path: Path) -> None:
    video = write_video(tmp_path / "c.mp4", lambda t: np.full((64, 64, 3), int(t * 40), np.uint8), cfr_times(4, 10))
    data = video.read_bytes()
    assert reason(clip_search(max_query_video_bytes=len(data) - 1), pb.SearchByVideoRequest(video=data)) == (
        code_pb2.INVALID_ARGUMENT,
        "VIDEO_TOO_LARGE",
    )
    too_long = reason(clip_search(max_query_video_s=2.5), pb.SearchByVideoRequest(video=data))
    assert too_long == (code_pb2.INVALID_ARGUMENT, "VIDEO_TOO_LONG")
    assert reason(clip_search(), pb.SearchByVideoRequest()) == (code_pb2.INVALID_ARGUMENT, "EMPTY_VIDEO")
    bad_threshold = pb.SearchByVideoRequest(video=data, min_score=2.0)
    assert reason(clip_search(), bad_threshold) == (code_pb2.INVALID_ARGUMENT, "INVALID_PARAMETER")


def test_a_clip_limit_must_fit_in_one_request() -> None:
    with pytest.raises(ValidationError, match="max_query_video_bytes"):
        QuerySettings(max_query_video_bytes=32 * 1024 * 1024, max_message_bytes=16 * 1024 * 1024)
