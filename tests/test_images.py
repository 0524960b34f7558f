from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rvs.media.errors import DecodeError, EmptyFile, TooLarge
from rvs.media.images import decode_image


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_exif_orientation_is_honoured() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(_jpeg(img, exif=exif.tobytes()))
    assert out.shape == (40, 20, 3)
    assert out[2, 10].mean() > 200 and out[-3, 10].mean() < 50  # white half ends up on top


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "I;16", "P"])
def test_modes_become_rgb(mode: str) -> None:
    img = Image.new(mode, (16, 16))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in {"CMYK", "I;16"} else "PNG")
    assert decode_image(buf.getvalue()).shape == (16, 16, 3)


def test_webp() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="WEBP", lossless=True)
    assert np.array_equal(decode_image(buf.getvalue())[0, 0], [1, 2, 3])


def test_bad_inputs() -> None:
    with pytest.raises(EmptyFile):
        decode_image(b"")
    with pytest.raises(DecodeError):
        decode_image(b"\x00garbage" * 100)
    with pytest.raises(DecodeError):
        decode_image(_jpeg(Image.new("RGB", (64, 64)))[:100])


def test_pixel_limit_refuses_huge_headers() -> None:
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")  # tiny file, 400 Mpx header
    with pytest.raises(TooLarge, match="limit of 50000000 pixels"):
        decode_image(buf.getvalue(), max_pixels=50_000_000)
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG")  # under PIL's own bomb guard, over ours
    with pytest.raises(TooLarge, match="8000x8000"):
        decode_image(buf.getvalue(), max_pixels=50_000_000)
