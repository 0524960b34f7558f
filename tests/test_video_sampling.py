"""Sample times come from real timestamps, whatever the codec, GOP, frame rate or rotation."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from rvs.core.media.errors import DecodeError, EmptyFile, NoVideoStream
from rvs.core.media.video import VideoSampler

from media_factory import cfr_times, write_audio_only, write_video

EVERY_SECOND = [i * 1000 for i in range(12)]


def _pattern(t: float) -> np.ndarray:
    """A frame that shows its own time: column band i is white at second i (and orientation)."""
    img = np.zeros((360, 640, 3), np.uint8)
    img[:180, :320] = 255  # top-left marker for rotation checks
    second = int(t)
    img[300:, second * 40 : second * 40 + 40] = (255, 0, 0)
    return img


def _times(path: Path, **kw: object) -> tuple[list[int], VideoSampler]:
    with VideoSampler(path, **kw) as s:  # type: ignore[arg-type]
        return [x.time_ms for x in s], s


@pytest.mark.parametrize(
    ("codec", "suffix"),
    [
        ("libx264", "mp4"),
        pytest.param("libx265", "mp4", marks=pytest.mark.slow),  # the slow encoders: seconds each
        pytest.param("libvpx-vp9", "webm", marks=pytest.mark.slow),
        ("libsvtav1", "mp4"),
        ("mpeg4", "avi"),
    ],
)
def test_codecs_give_the_same_sample_times(tmp_path: Path, codec: str, suffix: str) -> None:
    path = write_video(tmp_path / f"clip.{suffix}", _pattern, cfr_times(12, 25), codec=codec, gop=25)
    times, _ = _times(path)
    assert times == EVERY_SECOND


def test_samples_show_the_frame_at_their_time(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", _pattern, cfr_times(12, 25), gop=25)
    with VideoSampler(path) as s:
        for sample in s:
            second = sample.time_ms // 1000
            band = sample.rgb[330, second * 40 + 20]
            assert band[0] > 200 and band[1] < 60, f"sample at {sample.time_ms} ms shows another moment"


def test_short_gop_seeks_and_skips_most_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", _pattern, cfr_times(12, 25), gop=25)
    times, s = _times(path)
    assert times == EVERY_SECOND
    assert s.seeks >= 10
    assert s.frames_decoded < 300 / 3  # far fewer than the 300 frames in the file


def test_long_gop_decodes_through_once(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", _pattern, cfr_times(12, 25), gop=250)
    times, s = _times(path)
    assert times == EVERY_SECOND
    assert s.frames_decoded <= 300  # never decodes a frame twice


@pytest.mark.slow  # encodes and decodes 300 frames of noise
def test_long_gop_skips_b_frames_far_from_samples_yet_samples_exact_frames(tmp_path: Path) -> None:
    def moving(t: float) -> np.ndarray:  # every frame differs, so a neighbour would not pass for it
        img = np.random.default_rng(int(t * 1000)).integers(0, 255, (180, 320, 3), dtype=np.uint8)
        img[:, : int(t * 25) % 320] = 0
        return img

    path = write_video(tmp_path / "b.mp4", moving, cfr_times(12, 25), gop=250, options={"bf": "3"})
    with av.open(str(path)) as c:
        every = {round(f.time * 1000): f.to_ndarray(format="rgb24") for f in c.decode(video=0)}
    with VideoSampler(path) as s:
        samples = list(s)
    assert [x.time_ms for x in samples] == EVERY_SECOND
    for x in samples:
        assert np.array_equal(x.rgb, every[x.time_ms]), f"sample at {x.time_ms} ms is not that frame"
    assert s.frames_decoded < 0.8 * len(every)  # B-frames well before each sample were not decoded


def test_ntsc_rate_uses_real_timestamps(tmp_path: Path) -> None:
    times_s = [i * 1001 / 30000 for i in range(300)]  # 29.97 fps
    path = write_video(tmp_path / "ntsc.mp4", _pattern, times_s, rate=30)
    times, _ = _times(path)
    assert len(times) == 10
    for k, t in enumerate(times):
        assert k * 1000 <= t < k * 1000 + 34  # first frame at or after each second


def test_variable_frame_rate_and_gaps(tmp_path: Path) -> None:
    stamps = [0, 0.1, 0.5, 0.52, 2.7, 2.75, 3.0, 3.9, 4.0, 6.5, 7.01]
    path = write_video(tmp_path / "vfr.mp4", _pattern, stamps)
    times, _ = _times(path)
    # A gap skips the ticks it covers; each sample is a real frame's own time.
    assert times == [0, 2700, 3000, 4000, 6500, 7010]


def test_other_rates(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", _pattern, cfr_times(4, 25), gop=25)
    times, _ = _times(path, fps=2.0)
    # 25 fps has frames at 0.48 and 0.52 s: the sample for 0.5 s is the first frame at or after it.
    assert times == [0, 520, 1000, 1520, 2000, 2520, 3000, 3520]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_matches_ffmpeg(tmp_path: Path, rotation: int) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed as the reference for rotation (.ci/run installs it)"
    path = write_video(tmp_path / "rot.mp4", _pattern, cfr_times(1, 25), rotation=rotation)
    with VideoSampler(path) as s:
        ours = next(iter(s)).rgb
    ref = tmp_path / "ref.png"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-y", str(ref)], check=True)
    from PIL import Image

    theirs = np.asarray(Image.open(ref).convert("RGB"))
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 8


def test_downscaling_keeps_aspect_and_reports_scale(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", _pattern, cfr_times(1, 25))
    with VideoSampler(path, max_side=320) as s:
        sample = next(iter(s))
    assert sample.rgb.shape == (180, 320, 3)
    assert sample.scale == pytest.approx(2.0)


def test_odd_frame_size(tmp_path: Path) -> None:
    odd = lambda t: _pattern(t)[:241, :321]  # noqa: E731
    path = write_video(tmp_path / "odd.mkv", odd, cfr_times(3, 10), codec="ffv1", pix_fmt="yuv444p")
    with VideoSampler(path) as s:
        samples = list(s)
    assert [x.time_ms for x in samples] == [0, 1000, 2000]
    assert samples[0].rgb.shape == (241, 321, 3)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(EmptyFile):
        VideoSampler(path)


def test_text_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError):
        VideoSampler(path)


def test_audio_only(tmp_path: Path) -> None:
    path = write_audio_only(tmp_path / "audio.mp4", packets=10)
    with pytest.raises(NoVideoStream):
        VideoSampler(path)


def test_truncated_file_fails_or_yields_prefix(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.mp4", _pattern, cfr_times(6, 25), gop=25)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        with VideoSampler(cut) as s:
            times = [x.time_ms for x in s]
    except DecodeError:
        return  # moov atom at the end: nothing decodable, a clear failure
    assert times == EVERY_SECOND[: len(times)]


@pytest.mark.slow  # the shared clips
def test_real_clips(tmp_path: Path) -> None:
    from conftest import shared

    with VideoSampler(shared("media", "face_recognition", "examples", "short_hamilton_clip.mp4")) as s:
        times = [x.time_ms for x in s]
    # 29.97 fps, so samples fall on the frames at 0, 1.001, 2.002 ... seconds.
    assert times == [round(k * 1001) for k in range(10)]
    with VideoSampler(shared("media", "dlib", "dlib", "test", "ffmpeg_data", "elon-musk-smoke.gif")) as s:
        assert [x.time_ms for x in s] == [0, 1000]


@pytest.mark.parametrize(("gop", "suffix"), [(25, "mp4"), (250, "mp4"), (25, "ts")])
def test_frame_at_is_the_frame_the_sampler_took(tmp_path: Path, gop: int, suffix: str) -> None:
    """The search page shows a sample's frame again later: it must be the same picture, whether the
    container lets it seek (short and long GOPs) or not (MPEG-TS: decoded from the start)."""
    path = write_video(tmp_path / f"clip.{suffix}", _pattern, cfr_times(6, 25), gop=gop)
    with VideoSampler(path, max_side=320) as s:
        samples = list(s)
    for sample in samples:
        with VideoSampler(path, max_side=320) as again:
            frame = again.frame_at(sample.time_ms)
        assert frame is not None and frame.time_ms == sample.time_ms
        assert np.array_equal(frame.rgb, sample.rgb) and frame.scale == sample.scale
    with VideoSampler(path) as again:
        assert again.frame_at(60_000) is None  # past the end


def test_encoding_av1_leaves_the_process_scheduling_alone(tmp_path: Path) -> None:
    # SVT-AV1 sets SCHED_FIFO on its caller; a test process left so starved the suite (docker compose).
    before = os.sched_getscheduler(0)
    write_video(
        tmp_path / "a.mp4", lambda t: np.full((64, 64, 3), int(t * 40), np.uint8), cfr_times(1, 10), codec="libsvtav1"
    )
    assert os.sched_getscheduler(0) == before
