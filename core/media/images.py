"""Photos: decode with EXIF orientation honoured, guard against decompression bombs."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rvs.media.errors import DecodeError, EmptyFile, TooLarge

DEFAULT_MAX_PIXELS = 100_000_000  # 10k x 10k; larger headers are refused before decoding


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo to an RGB uint8 array (H, W, 3), upright according to its EXIF orientation."""
    if not data:
        raise EmptyFile("the image is empty (0 bytes)")
    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise TooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
                upright = ImageOps.exif_transpose(img)
                rgb = upright.convert("RGB")
                return np.asarray(rgb)
    except (TooLarge, EmptyFile):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"image exceeds the limit of {max_pixels} pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a decodable image: {exc}") from exc
