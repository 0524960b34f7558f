"""Live streams from a real RTMP server (nginx-rtmp, fed by ffmpeg) into the sampler service: segments
with wall-clock starts and their recordings, a cut of the stream and its return, a stalled server,
and credentials that reach no log line or metric."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rvs.core.bus.memory import MemoryFrameBus
from rvs.core.media.video import VideoSampler
from rvs.sampler.app import SamplerService
from rvs.sampler.config import SamplerSettings
from rvs.sampler.streams.spec import segment_id
from rvs.v1 import rvs_pb2 as pb

from media_factory import cfr_times, synthetic_photo, write_video
from recorder import Recorder, wait_for
from stream_server import RtmpServer, rtmp_server, rtsp_server, silent_server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RtmpServer]:
    with rtmp_server(tmp_path / "nginx") as s:
        yield s


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """Six seconds of a still picture (what the stream shows is not the point here)."""
    picture = synthetic_photo(3, (640, 360))
    return write_video(tmp_path / "loop.mp4", lambda t: picture, cfr_times(6, 25), gop=25)


Started = tuple[SamplerService, MemoryFrameBus, Recorder, CollectorRegistry]


@pytest.fixture
def sampler_on(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    started: list[SamplerService] = []

    def make(**kw: object) -> Started:
        settings = SamplerSettings(data_dir=tmp_path / "data", metrics_port=0, **kw)  # type: ignore[arg-type]
        bus, events, registry = MemoryFrameBus(capacity=10_000), Recorder(), CollectorRegistry()
        service = SamplerService(settings, bus, events, registry)
        service.start()
        started.append(service)
        return service, bus, events, registry

    yield make
    for s in started:
        s.stop()


def metric(registry: CollectorRegistry, name: str, stream: str = "cam1", **labels: str) -> float:
    value = registry.get_sample_value(name, {"stream": stream, **labels})
    return 0.0 if value is None else value


def test_segments_have_wall_clock_starts_frames_and_recordings(
    sampler_on: Callable[..., Started], server: RtmpServer, clip: Path, tmp_path: Path
) -> None:
    server.publish("cam1", clip)
    before = time.time() * 1000
    service, bus, events, registry = sampler_on(
        streams=[f"cam1={server.url('cam1')}"],
        stream_segment_s=4,
        stream_alert_unknown="cam1",
        recording_dir=tmp_path / "rec",
    )
    wait_for(lambda: len(events.of("sampled")) >= 2, timeout_s=40)
    assert service.healthy()
    discovered = events.of("discovered")
    first, second = discovered[0], discovered[1]
    for event in (first, second):
        d = event.discovered
        assert d.stream == "cam1" and d.source == "stream:cam1" and d.kind == pb.MEDIA_KIND_VIDEO
        assert event.at_ms == d.started_at_ms and before <= d.started_at_ms <= time.time() * 1000
        assert event.media_id == segment_id("cam1", d.started_at_ms)
        assert d.uri == str(tmp_path / "rec" / "cam1" / f"cam1-{d.started_at_ms}.mp4")
    # Segments follow one another: about 4 s apart (at a keyframe, one a second here), less what a
    # more punctual packet corrected the wall clock by meanwhile (under half a second, else a new
    # segment starts on it).
    assert 3400 <= second.discovered.started_at_ms - first.discovered.started_at_ms <= 5100
    closed = events.of("sampled")[0]
    assert closed.media_id == first.media_id and 4 <= closed.sampled.frame_count <= 5
    frames = [f for f in bus.poll(10_000, 0.1) if f.media_id == first.media_id]
    assert [f.time_ms // 100 for f in frames] == [i * 10 for i in range(len(frames))]  # a sample a second
    assert all(f.stream == "cam1" and f.alert_unknown and f.ingested_at_ms == first.at_ms for f in frames)
    assert frames[0].width == 640 and frames[0].uri == first.discovered.uri
    # The recording plays from its start, with the segment's times.
    with VideoSampler(first.discovered.uri, fps=1.0) as video:
        times = [s.time_ms for s in video]
    assert times[0] == 0 and 3000 <= times[-1] <= 5000
    assert metric(registry, "rvs_stream_up") == 1.0
    assert metric(registry, "rvs_stream_frames_sampled_total") >= 8
    assert metric(registry, "rvs_stream_segments_total") >= 2
    assert 0 <= metric(registry, "rvs_stream_lag_seconds") < 3


def test_a_cut_stream_reconnects_and_its_gap_is_counted(
    sampler_on: Callable[..., Started], server: RtmpServer, clip: Path
) -> None:
    server.publish("cam1", clip)
    service, bus, events, registry = sampler_on(
        streams=[f"cam1={server.url('cam1')}"],
        stream_segment_s=30,
        stream_read_timeout_s=2,
        stream_backoff_first_s=0.5,
        stream_backoff_max_s=2,
    )
    wait_for(lambda: metric(registry, "rvs_stream_frames_sampled_total") >= 3, timeout_s=30)
    server.cut("cam1")
    cut_at = time.time()
    # The read times out: the open segment is closed with what it has, never resumed.
    wait_for(lambda: len(events.of("sampled")) == 1, timeout_s=15)
    assert metric(registry, "rvs_stream_up") == 0.0
    time.sleep(max(0.0, 10 - (time.time() - cut_at)))
    server.publish("cam1", clip)
    wait_for(lambda: len(events.of("discovered")) == 2, timeout_s=30)
    wait_for(lambda: metric(registry, "rvs_stream_up") == 1.0, timeout_s=10)
    sampled_before = metric(registry, "rvs_stream_frames_sampled_total")
    wait_for(lambda: metric(registry, "rvs_stream_frames_sampled_total") >= sampled_before + 2, timeout_s=20)
    assert service.healthy()
    assert metric(registry, "rvs_stream_gaps_total") == 1.0
    assert 9 <= metric(registry, "rvs_stream_gap_seconds_total") <= 20
    assert metric(registry, "rvs_stream_reconnects_total") >= 1
    assert metric(registry, "rvs_stream_errors_total", reason="TIMEOUT") >= 1
    first, second = events.of("discovered")
    assert second.discovered.started_at_ms - first.discovered.started_at_ms >= 10_000
    assert first.media_id != second.media_id
    service.stop()
    # Stopping closes the open segment too.
    assert [e.media_id for e in events.of("sampled")] == [first.media_id, second.media_id]
    frames = bus.poll(10_000, 0.1)
    assert len(frames) == sum(e.sampled.frame_count for e in events.of("sampled"))


def test_a_stalled_server_hits_the_read_timeout_and_credentials_stay_hidden(
    sampler_on: Callable[..., Started], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with silent_server() as port:
        started = time.monotonic()
        service, _, events, registry = sampler_on(
            streams=[f"cam1=rtmp://admin:hunter2@127.0.0.1:{port}/live/x"],
            stream_read_timeout_s=1.5,
            stream_backoff_first_s=0.2,
            stream_backoff_max_s=0.5,
        )
        wait_for(lambda: metric(registry, "rvs_stream_errors_total", reason="TIMEOUT") >= 2, timeout_s=20)
        assert service.healthy() and not events.events
        assert metric(registry, "rvs_stream_reconnects_total") >= 1
        service.stop(timeout_s=10)
        assert time.monotonic() - started < 20
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "rtmp://***@127.0.0.1" in text
    assert "hunter2" not in text and "admin" not in text
    assert "hunter2" not in generate_latest(registry).decode()


def test_a_segment_left_open_by_a_crash_is_closed_at_the_next_start(
    sampler_on: Callable[..., Started], server: RtmpServer, clip: Path, tmp_path: Path
) -> None:
    """What the sampler's state says of a segment in progress when it stopped without closing it."""
    from rvs.sampler.state import WatchState

    state = WatchState(tmp_path / "data" / "sampler.db")
    state.open_segment("m" * 64, "cam1")
    state.segment_progress("m" * 64, 7, 6000, 640, 360)
    state.close()
    server.publish("cam1", clip)
    _, _, events, _ = sampler_on(streams=[f"cam1={server.url('cam1')}"])
    closed = events.of("sampled")[0]
    assert closed.media_id == "m" * 64 and closed.sampled.frame_count == 7 and closed.sampled.duration_ms == 6000
    wait_for(lambda: len(events.of("discovered")) == 1, timeout_s=20)
    assert events.of("discovered")[0].media_id != "m" * 64


def test_hls_is_sampled_like_rtmp(sampler_on: Callable[..., Started], server: RtmpServer, clip: Path) -> None:
    server.publish("cam1", clip)
    _, bus, events, registry = sampler_on(
        streams=[f"cam1={server.hls_url('cam1')}"], stream_segment_s=4, stream_read_timeout_s=8
    )
    # HLS comes a fragment at a time, the first ones in a burst from behind the live edge: the wall
    # clock can be corrected once the newest arrive, which ends a first, short segment.
    wait_for(lambda: any(e.sampled.frame_count >= 4 for e in events.of("sampled")), timeout_s=60)
    first = events.of("discovered")[0]
    assert first.discovered.uri == f"stream:cam1/{first.discovered.started_at_ms}"  # not recorded
    full = next(e for e in events.of("sampled") if e.sampled.frame_count >= 4)
    assert full.sampled.frame_count <= 5
    frames = [f for f in bus.poll(10_000, 0.1) if f.media_id == full.media_id]
    assert [f.time_ms // 100 for f in frames] == [i * 10 for i in range(len(frames))]
    assert metric(registry, "rvs_stream_up") == 1.0


def test_rtsp_with_credentials_and_a_wrong_password(
    sampler_on: Callable[..., Started],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    picture = synthetic_photo(4, (640, 360))
    clip = write_video(tmp_path / "long.mp4", lambda t: picture, cfr_times(30, 25), gop=25)
    with rtsp_server(clip, "viewer", "s3cret-pw") as port:
        _, bus, events, registry = sampler_on(
            streams=[
                f"door=rtsp://viewer:s3cret-pw@127.0.0.1:{port}/cam",
                f"yard=rtsp://viewer:wr0ng-pw@127.0.0.1:{port}/cam",
            ],
            stream_segment_s=3,
            stream_backoff_first_s=0.5,
            stream_backoff_max_s=1,
        )
        wait_for(lambda: len(events.of("sampled")) >= 1, timeout_s=40)
        wait_for(lambda: metric(registry, "rvs_stream_errors_total", "yard", reason="REFUSED") >= 1, timeout_s=20)
    discovered = events.of("discovered")
    assert {e.discovered.stream for e in discovered} == {"door"}
    frames = [f for f in bus.poll(10_000, 0.1) if f.media_id == discovered[0].media_id]
    assert len(frames) >= 3 and [f.time_ms // 100 for f in frames] == [i * 10 for i in range(len(frames))]
    assert metric(registry, "rvs_stream_up", "yard") == 0.0
    # FFmpeg's own messages (written to stderr by the library) included.
    text = (
        "\n".join(r.getMessage() for r in caplog.records) + generate_latest(registry).decode() + capfd.readouterr().err
    )
    assert "rtsp://***@127.0.0.1" in text and "401" in text
    assert "s3cret" not in text and "wr0ng" not in text
