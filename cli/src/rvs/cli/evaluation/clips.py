"""Building clips whose truth is known: photos pasted onto a background at known times (optionally
drifting a little), encoded with PyAV at the presentation times given. `rvs eval synth` builds its
set with these, and the tests build their clips with them (tests/media_factory.py)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

RGB = np.ndarray


@dataclass(frozen=True)
class Appearance:
    """`photo` is shown from start_s (included) to end_s (excluded), its top-left corner at (x, y)
    at start_s, moving by (dx_per_s, dy_per_s) pixels a second from there (kept inside the frame)."""

    photo: Path
    start_s: float
    end_s: float
    x: float = 40  # where the photo's top-left corner goes
    y: float = 40
    dx_per_s: float = 0.0
    dy_per_s: float = 0.0

    def shown(self, t: float) -> bool:
        """Whether the photo is in the frame at t (compared in whole milliseconds, as frames are stamped)."""
        return round(self.start_s * 1000) <= round(t * 1000) < round(self.end_s * 1000)

    def corner(self, t: float, frame: tuple[int, int], photo: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner (x, y) at t in a frame of (width, height) for a photo of (width, height)."""
        dt = max(0.0, t - self.start_s)
        x = round(self.x + self.dx_per_s * dt)
        y = round(self.y + self.dy_per_s * dt)
        return min(max(x, 0), frame[0] - photo[0]), min(max(y, 0), frame[1] - photo[1])


def load_rgb(path: Path, size: tuple[int, int] | None = None) -> RGB:
    with Image.open(path) as opened:
        img = opened.convert("RGB")
        if size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img)


def synthetic_photo(seed: int = 0, size: tuple[int, int] = (250, 250)) -> RGB:
    """A photo-like picture (width, height) made from a seed: colour gradients, a few soft shapes
    and sensor noise, as JPEG sizes and decoders see in a photo; another seed, other content."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = rng.uniform(40, 200, 3) + x[..., None] * rng.uniform(-0.3, 0.3, 3) + y[..., None] * rng.uniform(-0.3, 0.3, 3)
    for _ in range(4):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.1, 0.4, 2) * (width, height)
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        out[inside] = out[inside] * 0.4 + rng.uniform(0, 255, 3) * 0.6
    out += rng.normal(0, 6, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def scene(background: RGB, appearances: Sequence[Appearance], photos: dict[Path, RGB]) -> Callable[[float], RGB]:
    """Frame at time t: the background with every photo that appears at t pasted on it."""
    frame_size = (background.shape[1], background.shape[0])

    def frame(t: float) -> RGB:
        out = background.copy()
        for a in appearances:
            if a.shown(t):
                p = photos[a.photo]
                x, y = a.corner(t, frame_size, (p.shape[1], p.shape[0]))
                out[y : y + p.shape[0], x : x + p.shape[1]] = p
        return out

    return frame


def visible(appearances: Sequence[Appearance], times: Sequence[float], duration_s: float) -> list[tuple[float, float]]:
    """The intervals [start, end) in seconds in which any of `appearances` is on screen in a clip of
    frames at `times`: from the first frame showing it to the next frame without it (or the clip's end)."""
    intervals: list[tuple[float, float]] = []
    start: float | None = None
    for t in times:
        on = any(a.shown(t) for a in appearances)
        if on and start is None:
            start = t
        elif not on and start is not None:
            intervals.append((start, t))
            start = None
    if start is not None:
        intervals.append((start, duration_s))
    return [(round(float(a), 3), round(float(b), 3)) for a, b in intervals]


def write_video(
    path: Path,
    frame_at: Callable[[float], RGB],
    times: Sequence[float],
    codec: str = "libx264",
    gop: int | None = None,
    rate: int = 25,
    rotation: int = 0,
    options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode frames at the given presentation times (seconds); irregular times give a VFR file."""
    with _scheduling_kept():
        return _encode(path, frame_at, times, codec, gop, rate, rotation, options, pix_fmt)


@contextlib.contextmanager
def _scheduling_kept() -> Iterator[None]:
    """SVT-AV1's encoder raises the calling thread to SCHED_FIFO 99 where it may (as root): the
    process's children then inherit a real-time class, and one that spins starves the machine."""
    policy = os.sched_getscheduler(0) if sys.platform == "linux" else None
    param = os.sched_getparam(0) if policy is not None else None
    try:
        yield
    finally:
        if policy is not None and param is not None and os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, param)


def _encode(
    path: Path,
    frame_at: Callable[[float], RGB],
    times: Sequence[float],
    codec: str,
    gop: int | None,
    rate: int,
    rotation: int,
    options: dict[str, str] | None,
    pix_fmt: str,
) -> Path:
    first = frame_at(times[0])
    height, width = first.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{codec} is not a video codec")
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        if gop:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                stream.codec_context.options = {
                    **(options or {}),
                    "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
                }
        if rotation:
            stream.set_display_rotation(rotation)
        for t in times:
            frame = av.VideoFrame.from_ndarray(frame_at(t), format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cfr_times(duration_s: float, fps: float) -> list[float]:
    return [i / fps for i in range(round(duration_s * fps))]
