"""An alert's still: the face with some margin, small enough to travel in every alert."""

from __future__ import annotations

import cv2
import numpy as np

from rvs.core.media.frames import encode_jpeg, fit_within

STILL_MARGIN = 0.4  # of the box's size, on each side: the face and a little of the head around it
STILL_MAX_SIDE = 160
STILL_QUALITY = 85


def face_still(image: np.ndarray, box: tuple[float, float, float, float]) -> bytes:
    """JPEG of the face at `box` (pixels of `image`, RGB) with a margin, long side at most 160 px."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * STILL_MARGIN, (y2 - y1) * STILL_MARGIN
    left, top = min(width - 1, max(0, int(x1 - mx))), min(height - 1, max(0, int(y1 - my)))
    right, bottom = min(width, max(left + 1, int(x2 + mx) + 1)), min(height, max(top + 1, int(y2 + my) + 1))
    crop = image[top:bottom, left:right]
    size = fit_within(crop.shape[1], crop.shape[0], STILL_MAX_SIDE)
    if size != (crop.shape[1], crop.shape[0]):
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return encode_jpeg(np.ascontiguousarray(crop), STILL_QUALITY)
