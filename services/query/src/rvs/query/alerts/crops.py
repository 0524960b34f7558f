"""A watch entry's face crops: the face with a margin, as a small JPEG (the embedders embed it again
for a model the entry has no template for; the thumbnail is the first one)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Around the face box, this share of its size on each side: enough for a detector to find it again.
MARGIN = 0.5
FACE_SIDE = 256
THUMBNAIL_SIDE = 128


def face_jpeg(rgb: np.ndarray, box: tuple[float, float, float, float], side: int = FACE_SIDE) -> bytes:
    """The face at `box` (pixels of `rgb`) with a margin, fitted in side x side."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    height, width = rgb.shape[:2]
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
    image = Image.fromarray(rgb[top:bottom, left:right])
    image.thumbnail((side, side))
    return jpeg(image)


def thumbnail(face: bytes) -> bytes:
    image = Image.open(io.BytesIO(face))
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return jpeg(image)


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=88)
    return out.getvalue()
