"""A live stream through the whole embedded app (sface+yunet, embedded Milvus): a face shown at known
times of a looped clip is found in the stream's segments, whose media carry the stream and the
wall-clock start; the recording is served by the search page; a restart closes the segment that
was open rather than sampling it again."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
from rvs.embedder.config import EmbedderSettings
from rvs.query.config import QuerySettings
from rvs.sampler.config import SamplerSettings
from rvs.v1 import rvs_pb2 as pb

from conftest import free_port, lfw, shared
from corpus import BLAIR, BUSH, search
from embedded_app import start
from media_factory import Appearance, cfr_times, load_rgb, scene, write_video
from recorder import wait_for
from stream_server import rtmp_server

pytestmark = pytest.mark.slow

LOOP_S = 8  # Bush is shown from 2 s to 6 s of every 8
SHOWN = (2, 6)


def _settings(tmp_path: Path, url: str, milvus_uri: str, collection: str) -> EmbeddedSettings:
    common = dict(data_dir=tmp_path / "data", model="sface", detector="yunet", milvus_uri=milvus_uri)
    return EmbeddedSettings(
        sampler=SamplerSettings(
            data_dir=tmp_path / "data",
            metrics_port=0,
            streams=[f"cam1={url}"],
            stream_segment_s=6,
            recording_dir=tmp_path / "rec",
        ),
        embedder=EmbedderSettings(**common, collection=collection, metrics_port=0),  # type: ignore[arg-type]
        query=QuerySettings(**common, collection=collection, port=free_port(), web_port=free_port(), metrics_port=0),  # type: ignore[arg-type]
    )


def _done_segments(app: EmbeddedApp) -> list[pb.Media]:
    return [m for m in app.catalog.list_media() if m.stream and m.state == pb.MEDIA_STATE_DONE]


def test_a_face_in_a_live_stream_is_found_in_its_segments(
    tmp_path: Path, milvus_uri: str, collection_name: str
) -> None:
    background = load_rgb(shared("media", "dlib", "examples", "video_frames", "frame_000100.jpg"), (640, 360))
    photos = {lfw(BUSH, 1): load_rgb(lfw(BUSH, 1))}
    clip = write_video(
        tmp_path / "loop.mp4",
        scene(background, [Appearance(lfw(BUSH, 1), *SHOWN)], photos),
        cfr_times(LOOP_S, 25),
        gop=25,
    )
    with rtmp_server(tmp_path / "nginx") as server:
        published_at = server.publish("cam1", clip)
        s = _settings(tmp_path, server.url("cam1"), milvus_uri, collection_name)
        r = start(s, tmp_path)
        try:
            wait_for(lambda: len(_done_segments(r.app)) >= 3, timeout_s=90)
            response = search(r.stub, lfw(BUSH, 10))
            hits = [v for v in response.videos if v.uri.startswith(str(tmp_path / "rec"))]
            assert hits, response
            segments = {m.media_id: m for m in r.app.catalog.list_media() if m.stream}
            for hit in hits:
                media = segments[hit.media_id]
                assert media.stream == "cam1" and media.source == "stream:cam1"
                assert media.started_at_ms == media.discovered_at_ms >= published_at
                for found in hit.segments:
                    # Wall-clock time in the looped clip: within Bush's seconds of it (give or take the
                    # server's latency and a sample).
                    for t in (found.start_ms, found.best_time_ms):
                        in_loop = ((media.started_at_ms + t - published_at) / 1000) % LOOP_S
                        assert SHOWN[0] - 1.5 <= in_loop <= SHOWN[1] + 1.5, (t, in_loop)
            assert not [v for v in search(r.stub, lfw(BLAIR, 1)).videos if v.media_id in segments]

            # The search page plays the recording and shows its frames.
            web = f"http://127.0.0.1:{s.query.web_port}"
            hit = hits[0]
            with urllib.request.urlopen(f"{web}/api/media/{hit.media_id}/file", timeout=30) as answer:
                assert answer.headers["content-type"] == "video/mp4" and len(answer.read()) > 10_000
            t = hit.segments[0].best_time_ms
            with urllib.request.urlopen(f"{web}/api/media/{hit.media_id}/frame?t_ms={t}", timeout=30) as answer:
                assert answer.headers["content-type"] == "image/jpeg"
            with urllib.request.urlopen(f"{web}/api/media/{hit.media_id}", timeout=30) as answer:
                assert json.load(answer)["stream"] == "cam1"
        finally:
            r.channel.close()
            r.app.stop()
        # After a stop every segment is closed; after a restart with the stream away, nothing is
        # left unfinished and no segment is sampled again.
        server.cut("cam1")
        stopped = _segments(s)
        assert stopped and not [m for m in stopped if m.state == pb.MEDIA_STATE_SAMPLING]
        before = {m.media_id for m in stopped}
        again = start(s, tmp_path)
        try:
            wait_for(lambda: not again.app.catalog.has_unfinished(), timeout_s=60)
            assert {m.media_id for m in again.app.catalog.list_media() if m.stream} == before
        finally:
            again.channel.close()
            again.app.stop()


def _segments(s: EmbeddedSettings) -> list[pb.Media]:
    from rvs.core.catalog import Catalog

    catalog = Catalog(s.shared.data_dir / "catalog.db")
    try:
        return [m for m in catalog.list_media() if m.stream]
    finally:
        catalog.close()
