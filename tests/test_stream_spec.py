"""Live streams without a server: NAME=URL settings, credentials kept out of what is shown, the time
arithmetic of segments and samples, and the CLI's refusal of --once with streams."""

from __future__ import annotations

import logging
from fractions import Fraction

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from rvs.cli.main import build_parser
from rvs.core.logs import setup_logging
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.streams.segments import Timeline
from rvs.sampler.streams.spec import parse_streams, redact_url, segment_id


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://user:pass@cam.local:554/live", "rtsp://***@cam.local:554/live"),
        ("rtmp://admin@10.0.0.2/live/a", "rtmp://***@10.0.0.2/live/a"),
        ("srt://host:9000?mode=caller", "srt://host:9000?mode=caller"),
        ("https://u:p%40ss@cdn.example/hls/index.m3u8", "https://***@cdn.example/hls/index.m3u8"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_streams_from_flags_env_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = SamplerSettings(streams=["cam1=rtsp://u:p@h/x", "door-2=rtmp://h/live/d"])
    assert {k: v.get_secret_value() for k, v in flags.streams.items()} == {
        "cam1": "rtsp://u:p@h/x",
        "door-2": "rtmp://h/live/d",
    }
    monkeypatch.setenv("RVS_STREAMS", "a=srt://h:9000 b=https://h/index.m3u8")
    monkeypatch.setenv("RVS_STREAM_ALERT_UNKNOWN", "b")
    env = SamplerSettings()
    assert sorted(env.streams) == ["a", "b"] and env.stream_alert_unknown == ("b",)
    assert parse_streams('{"c": "rtsp://h/c"}') == {"c": "rtsp://h/c"}


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        (["bad name=rtsp://u:secret@h/x"], "stream name"),
        (["cam1"], "NAME=URL"),
        (["cam1=/dev/video0"], "not a stream URL"),
        (["x=file:///etc/passwd"], "not a stream URL"),
        (["a=rtsp://h/1", "a=rtsp://h/2"], "given twice"),
    ],
)
def test_bad_streams_are_refused_clearly(streams: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SamplerSettings(streams=streams)
    text = "; ".join(e["msg"] for e in caught.value.errors())
    assert message in text and "secret" not in text


def test_alerts_name_configured_streams_and_recordings_stay_out_of_the_watched_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="not configured: door"):
        SamplerSettings(streams=["cam=rtsp://h/x"], stream_alert_unknown="cam,door")
    with pytest.raises(ValidationError, match="inside watch_dir"):
        SamplerSettings(streams=["cam=rtsp://h/x"], watch_dir=tmp_path, recording_dir=tmp_path / "rec")


def test_segment_ids_depend_on_stream_and_start() -> None:
    assert segment_id("cam1", 1000) == segment_id("cam1", 1000)
    assert len({segment_id("cam1", 1000), segment_id("cam1", 1001), segment_id("cam2", 1000)}) == 3


def _feed(timeline: Timeline, times: list[float], keyframe_every_s: float) -> list[tuple[int, int, int]]:
    """(segment start wall ms, sample index, time ms) of the samples, packets and frames alike at `times`."""
    out = []
    for t in times:
        ft = Fraction(t).limit_denominator(1000)
        keyframe = round(t * 1000) % round(keyframe_every_s * 1000) == 0
        if timeline.rolls(ft, keyframe):
            timeline.start_segment(ft)
        sample = timeline.frame(ft)
        if sample is not None:
            assert timeline.segment is not None
            out.append((timeline.segment.started_at_ms, sample.index, sample.time_ms))
    return out


def test_segments_start_at_keyframes_and_samples_follow_stream_time() -> None:
    # 25 fps from pts 7.0 s (a stream joined mid-way), a keyframe every 2 s, 5-s segments at 1 fps.
    times = [7.0 + i / 25 for i in range(25 * 14)]
    timeline = Timeline(connect_wall_ms=1_000_000, fps=1.0, segment_s=5.0, jump_s=10.0)
    samples = _feed(timeline, times[13:], keyframe_every_s=2.0)  # the first frames precede a keyframe
    starts = sorted({s for s, _, _ in samples})
    # The first keyframe at 8 s starts the first segment (wall: anchor + 8 - 7.52); the next at 14 s
    # (the first keyframe 5 s or more after 8), the next at 20 s.
    anchor_first = 1_000_000 + round((8.0 - times[13]) * 1000)
    assert starts == [anchor_first, anchor_first + 6000, anchor_first + 12000]
    first = [(i, ms) for s, i, ms in samples if s == starts[0]]
    assert first == [(i, i * 1000) for i in range(6)]  # 8 s to 14 s: samples at 0..5 s
    assert timeline.lag_s(Fraction(20), now_ms=anchor_first + 12000 + 2500) == pytest.approx(2.5)


def test_a_stream_without_keyframes_still_rolls_and_jumps_are_seen() -> None:
    timeline = Timeline(connect_wall_ms=0, fps=2.0, segment_s=3.0, jump_s=5.0)
    assert not timeline.rolls(Fraction(0), keyframe=False)  # nothing decodable before a keyframe
    assert timeline.rolls(Fraction(0), keyframe=True)
    timeline.start_segment(Fraction(0))
    assert not timeline.rolls(Fraction(5), keyframe=False)
    assert timeline.rolls(Fraction(6), keyframe=False)  # twice the length without a keyframe
    timeline.frame(Fraction(6))
    assert timeline.discontinuous(Fraction(12)) and timeline.discontinuous(Fraction(4))
    assert not timeline.discontinuous(Fraction(7))


def test_stream_metrics_are_labelled_by_name() -> None:
    registry = CollectorRegistry()
    metrics = SamplerMetrics(registry)
    metrics.stream_up.labels("cam1").set(1)
    metrics.stream_reconnects.labels("cam1").inc()
    text = generate_latest(registry).decode()
    assert 'rvs_stream_up{stream="cam1"} 1.0' in text and 'rvs_stream_reconnects_total{stream="cam1"} 1.0' in text


def test_up_once_refuses_streams(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(
        ["up", "--once", "--data-dir", str(tmp_path), "--stream", "cam1=rtsp://u:secret@h/x"]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "never ends" in err and "secret" not in err


def test_a_bad_stream_flag_is_one_line_without_credentials(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(
        ["sampler", "--data-dir", str(tmp_path), "--stream", "bad name=rtsp://u:secret@h/x"]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "stream name 'bad name'" in err and "secret" not in err


def test_log_lines_redact_stream_urls(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("rvs.test").warning("cannot open %s", "rtsp://user:secret@cam/x")
    assert "secret" not in capsys.readouterr().err


def test_segments_cut_short_are_closed_with_what_the_catalog_has(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Embedded mode at start: a segment still sampling (or embedding) in the catalog lost its frames
    in memory; closing it with the frames embedded makes it done, and it is never sampled again."""
    from rvs.cli.embedded import LocalEvents
    from rvs.core.bus.memory import MemoryFrameBus
    from rvs.core.catalog import Catalog
    from rvs.sampler.app import SamplerService
    from rvs.v1 import rvs_pb2 as pb

    catalog = Catalog(tmp_path / "catalog.db")
    media_id = segment_id("cam1", 5000)
    discovered = pb.MediaDiscovered(uri="stream:cam1/5000", kind=pb.MEDIA_KIND_VIDEO, stream="cam1", started_at_ms=5000)
    catalog.apply(pb.MediaEvent(media_id=media_id, at_ms=5000, discovered=discovered))
    catalog.apply(pb.MediaEvent(media_id=media_id, sampling_started=pb.SamplingStarted(sample_interval_ms=1000)))
    catalog.apply(
        pb.MediaEvent(media_id=media_id, embedded=pb.FramesEmbedded(sample_indices=[0, 1], face_counts=[0, 1]))
    )
    settings = SamplerSettings(streams=["cam1=rtmp://127.0.0.1:9/live/cam1"], data_dir=tmp_path / "data")
    service = SamplerService(settings, MemoryFrameBus(), LocalEvents(catalog, lambda _: 0), CollectorRegistry())
    service.state.open_segment(media_id, "cam1")
    service.close_cut_segments([m for m in catalog.unfinished() if m.stream])
    assert not catalog.has_unfinished() and catalog.get(media_id).state == pb.MEDIA_STATE_DONE  # type: ignore[union-attr]
    assert service.state.open_segments("cam1") == []
    service.state.close()
    catalog.close()


def test_a_late_first_packet_is_corrected_by_the_next_punctual_ones_in_a_new_segment() -> None:
    # The reader was held up for 3 s when it connected (a loaded machine): the first packets arrive
    # 3 s after they were live, then on time. The true wall clock is 1_000_000 ms at pts 10 s.
    timeline = Timeline(connect_wall_ms=1_003_000, fps=1.0, segment_s=60.0, jump_s=10.0)
    ends = []
    for i in range(25 * 6):
        t = Fraction(10) + Fraction(i, 25)
        late_ms = 3000 if i < 25 else 0
        if timeline.arrived(t, 1_000_000 + int((t - 10) * 1000) + late_ms):
            ends.append(i)
            timeline.end_segment()
        if timeline.rolls(t, keyframe=i % 25 == 0):
            timeline.start_segment(t)
        timeline.frame(t)
    assert ends == [25]  # once, at the first punctual packet
    assert timeline.segment is not None and timeline.segment.started_at_ms == 1_001_000  # pts 11 s, on time
    assert timeline.wall_ms(Fraction(14)) == 1_004_000
