"""Photos: decode with EXIF orientation honoured, guard against decompression bombs."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rvs.media.errors import DecodeError, EmptyFile, TooLarge

DEFAULT_MAX_PIXELS = 100_000_000  # 10k x 10k; larger headers are refused before decoding


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo to an RGB uint8 array (H, W, 3), upright according to its EXIF orientation."""
    if not data:
        raise EmptyFile("the image is empty (0 bytes)")
    return np.asarray(open_upright(io.BytesIO(data), max_pixels)[0])


def open_upright(
    source: str | Path | IO[bytes], max_pixels: int = DEFAULT_MAX_PIXELS, draft_side: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """The image as upright RGB, and the original's size. The pixel count is checked before decoding;
    with `draft_side` a JPEG is decoded at a fraction of its size, still at least that on its long side."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise TooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
                if draft_side:
                    img.draft("RGB", (draft_side, draft_side))
                return ImageOps.exif_transpose(img).convert("RGB"), (width, height)
    except TooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"image exceeds the limit of {max_pixels} pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a decodable image: {exc}") from exc
