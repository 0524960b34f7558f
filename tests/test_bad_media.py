"""A corpus of awkward and broken media through the sampler service: each file ends in a precise
state (sampled, with its frames, or failed with a reason) and the service keeps going."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvs.v1 import rvs_pb2 as pb

from conftest import ROOT
from media_factory import cfr_times, synthetic_photo, write_audio_only, write_photo, write_video
from recorder import wait_for


def pattern(t: float) -> np.ndarray:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, : int(16 * (t % 10)) + 1] = 200
    return frame


def corrupt_middle(path: Path) -> None:
    """Overwrite bytes in the middle of the media data: some frames cannot be decoded."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    rng = random.Random(7)
    data[mid : mid + 3000] = bytes(rng.randrange(256) for _ in range(3000))
    path.write_bytes(bytes(data))


def build(watch: Path, outside: Path) -> dict[str, tuple[str, object]]:
    """Writes the corpus; returns file name -> ("sampled", frame count) or ("failed", reason)."""
    expect: dict[str, tuple[str, object]] = {}
    (watch / "zero.mp4").write_bytes(b"")
    expect["zero.mp4"] = ("failed", "EMPTY_FILE")

    full = write_video(watch.parent / "full.mp4", pattern, cfr_times(6, 25), gop=25)
    (watch / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # moov atom at the end
    expect["truncated.mp4"] = ("failed", "DECODE_ERROR")

    (watch / "notes.mp4").write_text("this is not a video\n" * 100)
    expect["notes.mp4"] = ("failed", "DECODE_ERROR")

    write_audio_only(watch / "audio.mp4")
    expect["audio.mp4"] = ("failed", "NO_VIDEO_STREAM")

    corrupt = write_video(watch.parent / "corrupt.mp4", pattern, cfr_times(20, 25), gop=25)
    corrupt_middle(corrupt)
    shutil.move(corrupt, watch / "corrupt_mid.mp4")
    expect["corrupt_mid.mp4"] = ("sampled", range(15, 21))  # the good frames still come through

    Image.new("RGB", (7680, 4320), (40, 90, 160)).save(watch / "8k.jpg", quality=80)
    expect["8k.jpg"] = ("sampled", 1)

    write_video(watch / "phone.mov", pattern, cfr_times(4, 30), rotation=90)
    expect["phone.mov"] = ("sampled", 4)

    write_video(watch / "vfr.mp4", pattern, [0, 0.1, 0.15, 1.9, 2.05, 4.5, 4.6])
    expect["vfr.mp4"] = ("sampled", 4)  # frames at 0, 1.9, 2.05 and 4.5 s; the gap skips tick 3

    gif = [Image.new("RGB", (80, 60), (i * 40, 0, 0)) for i in range(6)]
    gif[0].save(watch / "anim.gif", save_all=True, append_images=gif[1:], duration=500, loop=0)
    expect["anim.gif"] = ("sampled", 3)

    Image.fromarray(synthetic_photo(1)).convert("CMYK").save(watch / "cmyk.jpg")
    expect["cmyk.jpg"] = ("sampled", 1)

    Image.fromarray(np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)).save(watch / "deep.png")
    expect["deep.png"] = ("sampled", 1)

    Image.new("1", (30000, 30000)).save(watch / "bomb.png")  # 900 Mpx in a few hundred kB
    expect["bomb.png"] = ("failed", "TOO_LARGE")

    write_photo(watch / "Zoë café 写真 🙂.jpg", seed=2)
    expect["Zoë café 写真 🙂.jpg"] = ("sampled", 1)
    write_photo(watch / "  lots   of  spaces .jpg", seed=3)
    expect["  lots   of  spaces .jpg"] = ("sampled", 1)

    write_photo(outside / "private.jpg", seed=4)
    os.symlink(outside / "private.jpg", watch / "link-out.jpg")  # not followed: no state at all
    return expect


def test_bad_media_corpus(sampler: Callable, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "watch").mkdir()
    expect = build(tmp_path / "watch", outside)
    service, bus, events = sampler(settle_s=0.2)

    def finished() -> dict[str, pb.MediaEvent]:
        names = {e.media_id: Path(e.discovered.uri).name for e in events.of("discovered")}
        return {names[e.media_id]: e for e in events.of("sampled") + events.of("failed") if e.media_id in names}

    wait_for(lambda: len(finished()) == len(expect), timeout_s=120)
    outcome = finished()
    for name, (state, detail) in expect.items():
        event = outcome[name]
        if state == "failed":
            assert event.WhichOneof("event") == "failed" and event.failed.reason == detail, (name, event)
            assert event.failed.detail, name
        else:
            assert event.WhichOneof("event") == "sampled", (name, event)
            count = event.sampled.frame_count
            assert count in detail if isinstance(detail, range) else count == detail, (name, count)
    assert "link-out.jpg" not in {Path(e.discovered.uri).name for e in events.of("discovered")}
    by_name = {Path(f.uri).name: f for f in bus.poll(10_000, 0.1)}
    assert max(by_name["8k.jpg"].width, by_name["8k.jpg"].height) == 1280 and by_name["8k.jpg"].scale == 6.0
    phone = outcome["phone.mov"].sampled
    assert (phone.width, phone.height) == (120, 160)  # rotated upright

    # Still running: a good photo dropped now is sampled.
    write_photo(tmp_path / "watch" / "after.jpg", seed=5)
    wait_for(lambda: len(finished()) == len(expect) + 1, timeout_s=30)
    assert all(t.is_alive() for t in service._threads)


# Peak RSS from VmHWM: ru_maxrss would carry over the (large) test process's peak across exec.
_SAMPLE_LONG = """
import json, sys
from pathlib import Path
from rvs.core.media.video import VideoSampler
from rvs.core.media.frames import encode_jpeg

def hwm_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])

before = hwm_kib()
count = 0
with VideoSampler(Path(sys.argv[1]), fps=1.0, max_side=1280) as video:
    for sample in video:
        encode_jpeg(sample.rgb, 90)
        count += 1
print(json.dumps({"samples": count, "rss_before_kib": before, "peak_rss_kib": hwm_kib()}))
"""


@pytest.mark.slow  # encodes 21,600 frames
def test_three_hour_video_is_sampled_in_bounded_memory(tmp_path: Path) -> None:
    clip = tmp_path / "three_hours.mp4"
    # 3 h at 2 fps, 96x64: every sample is a real decode; the file has 21,600 frames.
    write_video(clip, lambda t: pattern(t)[:64, :96].copy(), cfr_times(3 * 3600, 2), rate=2, gop=600)
    out = subprocess.run(
        [sys.executable, "-c", _SAMPLE_LONG, str(clip)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    grown_mib = (figures["peak_rss_kib"] - figures["rss_before_kib"]) / 1024
    print(
        f"3-hour video: {figures['samples']} samples, peak RSS {figures['peak_rss_kib'] / 1024:.0f} MiB "
        f"(+{grown_mib:.1f} MiB while sampling)"
    )
    assert figures["samples"] == 3 * 3600
    assert grown_mib < 64, f"sampling grew the process by {grown_mib:.0f} MiB"
