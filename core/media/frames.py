"""The frame encoding used on the bus: JPEG at a set quality with the long side capped."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rvs.media.errors import DecodeError
from rvs.v1 import rvs_pb2 as pb


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the long side at most `max_side`, aspect ratio kept, even dimensions not required."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_frame(frame: pb.Frame) -> np.ndarray:
    """RGB uint8 (H, W, 3) pixels of a bus frame."""
    try:
        with Image.open(io.BytesIO(frame.image)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DecodeError(f"frame {frame.sample_index} of {frame.media_id} is not a valid image: {exc}") from exc
