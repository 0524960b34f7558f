"""Photos: decode with EXIF orientation honoured, guard against decompression bombs."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rvs.core.media.errors import DecodeError, EmptyFile, TooLarge
from rvs.core.media.kinds import IMAGE_FORMATS, IMAGE_FORMATS_TEXT

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
            # Only the photo formats rvs documents: Pillow's other plugins (EPS runs Ghostscript) never run.
            with Image.open(source, formats=sorted(IMAGE_FORMATS)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise TooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
                if draft_side:
                    img.draft("RGB", (draft_side, draft_side))
                return _rgb(ImageOps.exif_transpose(img)), (width, height)
    except TooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"image exceeds the limit of {max_pixels} pixels ({exc})") from exc
    except UnidentifiedImageError as exc:  # its message names the file object, not the problem
        raise DecodeError(f"not a {IMAGE_FORMATS_TEXT} image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"the image is damaged or incomplete: {exc}") from exc


def _rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. Pillow's conversion clips 16- and 32-bit grey to 255 (solid white): scale them."""
    if img.mode not in ("I", "F") and not img.mode.startswith("I;16"):
        return img.convert("RGB")
    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    grey = np.clip(np.rint(values * (255 / _full_scale(img.mode, values))), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _full_scale(mode: str, values: np.ndarray) -> float:
    """White of a deep grey image: 16-bit's maximum, else the smallest usual range its values fit
    ([0, 1] floats; 8-, 16-, 31-bit integers), else its brightest pixel."""
    if mode.startswith("I;16"):
        return 65535.0
    peak = float(values.max(initial=0.0))
    ranges = (1.0, 255.0, 65535.0, 2.0**31 - 1) if mode == "F" else (255.0, 65535.0, 2.0**31 - 1)
    return next((r for r in ranges if peak <= r), peak)
