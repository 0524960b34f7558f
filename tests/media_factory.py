"""Builds test media: clips from real photos (faces pasted onto a real background at known times), and
photo-like images made here for the tests that need a picture but no face and no ../shared/."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

RGB = np.ndarray


@dataclass(frozen=True)
class Appearance:
    photo: Path
    start_s: float
    end_s: float
    x: int = 40  # where the photo's top-left corner goes
    y: int = 40


def load_rgb(path: Path, size: tuple[int, int] | None = None) -> RGB:
    with Image.open(path) as img:
        img = img.convert("RGB")
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


def write_photo(path: Path, seed: int = 0, size: tuple[int, int] = (250, 250), **save: object) -> Path:
    """A synthetic_photo saved in the format its suffix names (JPEG at quality 90 unless `save` says)."""
    img = Image.fromarray(synthetic_photo(seed, size))
    if path.suffix.lower() in {".jpg", ".jpeg"}:
        save = {"quality": 90} | save
    img.save(path, **save)  # type: ignore[arg-type]
    return path


def scene(background: RGB, appearances: Sequence[Appearance], photos: dict[Path, RGB]) -> Callable[[float], RGB]:
    """Frame at time t: the background with every photo that appears at t pasted on it."""

    def frame(t: float) -> RGB:
        out = background.copy()
        for a in appearances:
            if a.start_s <= t < a.end_s:
                p = photos[a.photo]
                out[a.y : a.y + p.shape[0], a.x : a.x + p.shape[1]] = p
        return out

    return frame


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
    first = frame_at(times[0])
    height, width = first.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
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


def write_audio_only(path: Path, packets: int = 20) -> Path:
    """An MP4 with an AAC stream and no video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(packets):
            frame.pts = i * 1024
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path
