"""Thumbnails and video frames for the search page, made on demand from the original file and kept
in a bounded in-memory cache: nothing is stored at ingest."""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from rvs.core.media.errors import MediaError
from rvs.core.media.images import open_upright
from rvs.core.media.video import VideoSampler
from rvs.query.web.caches import SharedLRU

Box = tuple[int, int, int, int]


class NoFrame(Exception):
    """The video has no frame at the time asked for."""


@dataclass(frozen=True)
class StillKey:
    media_id: str  # a content hash: a key never goes stale
    time_ms: int  # 0 for photos
    box: Box | None
    side: int


class StillCache(SharedLRU[StillKey, bytes]):
    """Encoded JPEGs, least recently used dropped first once over `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes, getsizeof=len)


def _photo(path: Path, side: int) -> tuple[Image.Image, float]:
    """The photo upright, at least `side` on its long side where it is that large (JPEG decodes
    at a fraction of its size), and original pixels per returned pixel."""
    upright, (width, height) = open_upright(path, draft_side=side)
    return upright, max(width, height) / max(upright.size)


def _video_frame(path: Path, time_ms: int, side: int) -> tuple[Image.Image, float]:
    """The frame the sampler took at `time_ms`, upright, its long side at most `side`."""
    with VideoSampler(path, max_side=side) as sampler:
        sample = sampler.frame_at(time_ms)
    if sample is None:
        raise NoFrame(f"the video has no frame at {time_ms} ms")
    return Image.fromarray(sample.rgb), sample.scale


def render(path: Path, is_video: bool, time_ms: int, box: Box | None, side: int) -> bytes:
    """A JPEG of the photo, or of the video's frame at `time_ms`, fitted in side x side, with `box`
    (in pixels of the original, as search results give it) drawn on it."""
    image, scale = _video_frame(path, time_ms, side) if is_video else _photo(path, side)
    if max(image.size) > side:
        fitted = image.copy()
        fitted.thumbnail((side, side))
        scale *= max(image.size) / max(fitted.size)
        image = fitted
    if box is not None:
        x1, y1, x2, y2 = (v / scale for v in box)
        width = max(2, round(max(image.size) / 160))
        ImageDraw.Draw(image).rectangle((x1, y1, x2, y2), outline=(255, 204, 0), width=width)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def clip_frames(
    video: bytes, shots: list[tuple[int, Box | None]], side: int, deadline: float | None
) -> list[bytes | None]:
    """JPEGs of a query clip's frames at these (time, box) shots, as `render` makes them; None for a
    frame that cannot be read, or once past `deadline` (time.monotonic()). The clip is not kept: it
    is written to a temporary file for this, and deleted."""
    frames: list[bytes | None] = []
    with tempfile.NamedTemporaryFile(prefix="rvs-query-clip-") as file:
        file.write(video)
        file.flush()
        for time_ms, box in shots:
            if deadline is not None and time.monotonic() >= deadline:
                frames.append(None)
                continue
            try:
                frames.append(render(Path(file.name), True, time_ms, box, side))
            except (NoFrame, MediaError):
                frames.append(None)
    return frames
