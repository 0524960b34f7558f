"""Tracks through the gRPC API on the real corpus (dlib-resnet, embedded Milvus): find a person from a
result without uploading anything, reject one, ask with a clip; and grpcurl calls the new RPCs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from rvs.cli.embedded import EmbeddedSettings
from rvs.v1 import rvs_pb2 as pb

from conftest import error_reason, lfw
from corpus import BLAIR, BUSH, POWELL, RUMSFELD, search, segments
from embedded_app import Running, corpus_env, ingested

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[Running]:
    env: tuple[EmbeddedSettings, Path] = corpus_env(tmp_path_factory, milvus_uri, "tracks")
    yield from ingested(env)


def clip(running: Running, name: str) -> bytes:
    return next(running.watch.rglob(name)).read_bytes()


def test_segments_are_whole_tracks_with_ids(running: Running) -> None:
    resp = search(running.stub, lfw(BUSH, 10))
    # Bush is on screen in clip_a from 1 s to 4 s and in clip_b from 2 s to 6 s (samples at whole seconds).
    assert segments(resp) == {"clip_a.mp4": [(1000, 4000)], "clip_b.mp4": [(2000, 6000)]}
    for video in resp.videos:
        (seg,) = video.segments
        assert seg.samples == seg.end_ms // 1000 - seg.start_ms // 1000
        assert seg.matching_samples >= 2 and seg.track_score >= resp.min_score
        assert seg.track_id.startswith(video.media_id + ":") and seg.best_face_id.startswith(video.media_id + ":")


def test_find_this_person_from_a_track_or_a_face(running: Running) -> None:
    first = search(running.stub, lfw(BUSH, 10))
    in_a = next(v for v in first.videos if v.uri.endswith("clip_a.mp4")).segments[0]
    by_track = running.stub.Search(pb.SearchRequest(track_id=in_a.track_id), timeout=60)
    assert segments(by_track) == segments(first)  # the same person, found without a photo
    assert not by_track.query_faces
    by_face = running.stub.Search(pb.SearchRequest(face_id=in_a.best_face_id), timeout=60)
    assert set(segments(by_face)) == {"clip_a.mp4", "clip_b.mp4"}
    photo = search(running.stub, lfw(RUMSFELD, 5)).images[0]
    again = running.stub.Search(pb.SearchRequest(face_id=photo.face_id), timeout=60)
    assert [i.uri for i in again.images] == [photo.uri] and again.images[0].score == pytest.approx(1.0, abs=1e-4)


def test_unknown_and_malformed_ids_are_clear_errors(running: Running) -> None:
    known = search(running.stub, lfw(BUSH, 10)).videos[0].segments[0].track_id
    media, _, _ = known.split(":")
    cases = [
        (pb.SearchRequest(face_id=f"{media}:999000:0"), grpc.StatusCode.NOT_FOUND, "FACE_NOT_FOUND"),
        (pb.SearchRequest(track_id=f"{media}:999000:0"), grpc.StatusCode.NOT_FOUND, "TRACK_NOT_FOUND"),
        (pb.SearchRequest(face_id="not-an-id"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER"),
        (
            pb.SearchRequest(track_id=known, rejected_face_ids=["x' or 1==1"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PARAMETER",
        ),
    ]
    for request, code, reason in cases:
        with pytest.raises(grpc.RpcError) as err:
            running.stub.Search(request, timeout=60)
        assert (err.value.code(), error_reason(err.value)) == (code, reason), request


def test_not_this_person_drops_the_rejected_track_and_keeps_the_rest(running: Running) -> None:
    first = search(running.stub, lfw(BUSH, 10))
    in_b = next(v for v in first.videos if v.uri.endswith("clip_b.mp4")).segments[0]
    rejected = search(running.stub, lfw(BUSH, 10), rejected_track_ids=[in_b.track_id])
    assert set(segments(rejected)) == {"clip_a.mp4"}
    # Rejecting Powell (beside Bush in clip_b) says nothing against Bush: both clips stay.
    powell = search(running.stub, lfw(POWELL, 10)).videos[0].segments[0]
    kept = search(running.stub, lfw(BUSH, 10), rejected_face_ids=[powell.best_face_id])
    assert set(segments(kept)) == {"clip_a.mp4", "clip_b.mp4"}
    # A rejected example that is gone from the index no longer counts.
    gone = in_b.track_id.split(":")[0] + ":999000:0"
    assert set(segments(search(running.stub, lfw(BUSH, 10), rejected_face_ids=[gone]))) == set(segments(first))


def test_search_by_video_answers_per_person_of_the_clip(running: Running) -> None:
    reply = running.stub.SearchByVideo(pb.SearchByVideoRequest(video=clip(running, "clip_a.mp4")), timeout=120)
    # Bush 1-4 s; then Blair 7-10 s, with the second face his LFW photo shows beside him.
    assert reply.tracks_found == len(reply.tracks) == 3
    assert reply.samples == 12 and reply.duration_ms == pytest.approx(12_000, abs=100)
    spans = sorted((t.start_ms, t.end_ms) for t in reply.tracks)
    assert spans == [(1000, 4000), (7000, 10_000), (7000, 10_000)]
    answers = sorted((t.start_ms, segments(t.answer)) for t in reply.tracks)
    # The clip itself is indexed: it is left out. Bush is also in clip_b; Blair is nowhere else.
    assert answers == [(1000, {"clip_b.mp4": [(2000, 6000)]}), (7000, {}), (7000, {})]
    assert all(t.best_box.x2 > t.best_box.x1 and t.samples == 3 for t in reply.tracks)


def test_search_by_video_errors_and_a_photo_as_a_one_frame_clip(running: Running) -> None:
    cases = [
        (b"", "EMPTY_VIDEO"),
        (b"not a video at all" * 10, "DECODE_ERROR"),
        (clip(running, "no_faces.mp4"), "NO_FACE"),
    ]
    for video, reason in cases:
        with pytest.raises(grpc.RpcError) as err:
            running.stub.SearchByVideo(pb.SearchByVideoRequest(video=video), timeout=60)
        assert error_reason(err.value) == reason, (reason, err.value.details())
    with pytest.raises(grpc.RpcError) as err:
        running.stub.SearchByVideo(pb.SearchByVideoRequest(video=clip(running, "clip_a.mp4"), max_tracks=65))
    assert (err.value.code(), error_reason(err.value)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER")
    # A 150-pixel-wide photo decodes with padded rows: the models still read it.
    photo = running.stub.SearchByVideo(pb.SearchByVideoRequest(video=lfw(BLAIR, 1).read_bytes()), timeout=60)
    assert photo.samples == 1 and photo.tracks_found >= 1


def grpcurl() -> str:
    found = os.environ.get("RVS_GRPCURL") or shutil.which("grpcurl")
    if not found:
        pytest.fail(
            "grpcurl is not installed: `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3` (.ci/run)"
        )
    return found


def test_grpcurl_lists_and_calls_the_new_rpcs_by_reflection(running: Running) -> None:
    address = f"127.0.0.1:{running.app.query.port}"  # type: ignore[union-attr]
    listed = subprocess.run(
        [grpcurl(), "-plaintext", address, "describe", "rvs.v1.SearchService"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "rpc SearchByVideo" in listed and "rpc Search" in listed
    track = search(running.stub, lfw(BUSH, 10)).videos[0].segments[0].track_id
    out = subprocess.run(
        [grpcurl(), "-plaintext", "-d", json.dumps({"trackId": track}), address, "rvs.v1.SearchService/Search"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert {Path(v["uri"]).name for v in json.loads(out)["videos"]} == {"clip_a.mp4", "clip_b.mp4"}
