from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rvs.core.media.errors import DecodeError, EmptyFile, TooLarge
from rvs.core.media.images import decode_image

from media_factory import synthetic_photo


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


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_high_bit_depth_images_are_scaled_to_8_bits() -> None:
    """A 16-bit PNG and 32-bit TIFFs of a photo decode to its grey levels, not to solid white."""
    grey = np.asarray(Image.fromarray(synthetic_photo()).convert("L"))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)  # mode I;16
    int32 = Image.fromarray(grey.astype(np.int32) * 8421504)  # mode I, the full signed 32-bit range
    floats = Image.fromarray(grey.astype(np.float32) / 255)  # mode F, in [0, 1]
    for img, fmt in ((sixteen, "PNG"), (sixteen, "TIFF"), (int32, "TIFF"), (floats, "TIFF")):
        out = decode_image(_encoded(img, fmt))
        assert out.shape == (*grey.shape, 3), (img.mode, fmt)
        assert np.abs(out[..., 0].astype(int) - grey).max() <= 1, (img.mode, fmt)


def test_decode_errors_say_what_is_wrong_without_internals() -> None:
    for data in (b"\x00garbage" * 100, _jpeg(Image.new("RGB", (64, 64)))[:100]):
        with pytest.raises(DecodeError) as info:
            decode_image(data)
        assert "0x" not in info.value.detail and "BytesIO" not in info.value.detail, info.value.detail


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "ICO", "GIF", "EPS"])
def test_only_the_documented_photo_formats_are_decoded(fmt: str) -> None:
    """JPEG, PNG, WebP, BMP and TIFF (kinds.IMAGE_FORMATS) are photos; nothing else reaches Pillow's
    other decoders (EPS would run Ghostscript where it is installed)."""
    if fmt == "EPS":
        data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n"
    else:
        data = _encoded(Image.new("RGB", (16, 16), (9, 9, 9)), fmt)
    with pytest.raises(DecodeError, match="JPEG, PNG, WebP, BMP or TIFF"):
        decode_image(data)
