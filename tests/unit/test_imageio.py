"""Hostile and unusual inputs are converted on purpose or rejected with a reason."""

import io

import numpy as np
import pytest
from PIL import Image

from studioline.shared.config import LimitSettings
from studioline.shared.errors import ImageRejected
from studioline.shared.imageio import decode_image, decode_mask, encode_image

LIMITS = LimitSettings()


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=64, h=48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return np.dstack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)), np.full((h, w), 128, np.uint8)])


def test_rgb_jpeg_decodes_to_rgb():
    out = decode_image(_encode(Image.fromarray(_gradient()), "JPEG", quality=95), LIMITS)
    assert out.pixels.shape == (48, 64, 3) and out.pixels.dtype == np.uint8
    assert out.format == "JPEG" and len(out.sha256) == 64


def test_exif_orientation_is_applied():
    img = Image.fromarray(_gradient(64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_encode(img, "JPEG", exif=exif), LIMITS)
    assert out.pixels.shape[:2] == (64, 48)


def test_cmyk_becomes_rgb():
    img = Image.fromarray(_gradient()).convert("CMYK")
    out = decode_image(_encode(img, "JPEG"), LIMITS)
    assert out.pixels.shape == (48, 64, 3)


def test_16bit_grayscale_is_scaled_not_clipped():
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    out = decode_image(_encode(Image.fromarray(arr), "PNG"), LIMITS)
    assert out.pixels.shape == (8, 64, 3)
    assert out.pixels[0, 0, 0] == 0 and out.pixels[0, -1, 0] == 255
    assert 120 < out.pixels[0, 32, 0] < 136  # mid-range stays mid-grey


def test_palette_with_transparency_keeps_alpha():
    img = Image.new("P", (16, 16), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (0, 0, 8, 16))
    img.info["transparency"] = 0
    out = decode_image(_encode(img, "PNG", transparency=0), LIMITS)
    assert out.pixels.shape == (16, 16, 4)
    assert out.pixels[0, 12, 3] == 0 and out.pixels[0, 2, 3] == 255


def test_grayscale_and_opaque_alpha_become_rgb():
    gray = decode_image(_encode(Image.fromarray(_gradient()[..., 0]), "PNG"), LIMITS)
    assert gray.pixels.shape == (48, 64, 3)
    rgba = np.dstack([_gradient(), np.full((48, 64), 255, np.uint8)])
    assert decode_image(_encode(Image.fromarray(rgba), "PNG"), LIMITS).pixels.shape == (48, 64, 3)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not_an_image"),
        (b"%PDF-1.4\n1 0 obj", "not_an_image"),
    ],
)
def test_non_images_are_rejected(data, code):
    with pytest.raises(ImageRejected) as err:
        decode_image(data, LIMITS)
    assert err.value.code == code


def test_truncated_jpeg_is_rejected():
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)), "JPEG")
    with pytest.raises(ImageRejected) as err:
        decode_image(data[: len(data) // 2], LIMITS)
    assert err.value.code == "truncated" and "truncated" in str(err.value)


def test_pixel_limit_checked_from_header():
    data = _encode(Image.new("L", (3000, 3000)), "PNG")  # tiny file, 9 MP
    with pytest.raises(ImageRejected) as err:
        decode_image(data, LimitSettings(max_pixels=5_000_000))
    assert err.value.code == "too_many_pixels" and "3000x3000" in str(err.value)


def test_byte_limit():
    with pytest.raises(ImageRejected) as err:
        decode_image(b"\xff" * 5000, LimitSettings(max_bytes=4096))
    assert err.value.code == "too_large"


def test_masks_and_round_trip():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255
    assert np.array_equal(decode_mask(encode_image(mask, "png"), LIMITS), mask)
    rgba = np.dstack([_gradient(30, 20), mask])
    assert np.array_equal(decode_mask(encode_image(rgba, "png"), LIMITS), mask)
    with pytest.raises(ValueError):
        encode_image(rgba, "jpeg")
