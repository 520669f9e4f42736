"""Hostile and unusual inputs are converted on purpose or rejected with a reason."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studioline.shared.config import LimitSettings
from studioline.shared.errors import ImageRejected, PermanentError, TransientError
from studioline.shared.imageio import decode_image, decode_mask, encode_image, read_header

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


# ---- hostile files, crafted here ----------------------------------------------------------


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png_with(extra: bytes, *, after_idat: bool = False) -> bytes:
    """A valid 8x8 grey PNG with `extra` chunks before (or after) its pixel data."""
    png = _encode(Image.new("L", (8, 8), 128), "PNG")
    idat = png.index(b"IDAT") - 4
    iend = png.index(b"IEND") - 4
    at = iend if after_idat else idat
    return png[:at] + extra + png[at:]


# Compressed text or profile that inflates past Pillow's MAX_TEXT_CHUNK (1 MB): 2 KB on the wire.
_INFLATES_TO_2MB = zlib.compress(b"\0" * (2 << 20), 9)


@pytest.mark.parametrize(
    "data, where",
    [
        (_png_with(_chunk(b"zTXt", b"comment\0\0" + _INFLATES_TO_2MB)), "zTXt before the pixels"),
        (_png_with(_chunk(b"zTXt", b"comment\0\0" + _INFLATES_TO_2MB), after_idat=True), "zTXt after the pixels"),
        (_png_with(_chunk(b"iCCP", b"profile\0\0" + _INFLATES_TO_2MB)), "iCCP profile"),
        (_png_with(_chunk(b"iTXt", b"comment\0\1\0\0\0" + _INFLATES_TO_2MB)), "compressed iTXt"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_png_decompression_bombs_are_rejected_not_retried(data, where):
    with pytest.raises(ImageRejected) as err:
        decode_image(data, LIMITS)
    assert err.value.code == "corrupt", where
    assert "MAX_TEXT_CHUNK" in str(err.value) and len(str(err.value)) < 300


def test_text_chunks_past_pillows_total_are_rejected():
    # 70 chunks that each inflate to just under 1 MB: past Pillow's MAX_TEXT_MEMORY (64 MB).
    chunk = _chunk(b"zTXt", b"c\0\0" + zlib.compress(b"a" * 1_000_000, 9))
    with pytest.raises(ImageRejected) as err:
        decode_image(_png_with(chunk * 70), LIMITS)
    assert err.value.code == "corrupt" and "MAX_TEXT_MEMORY" in str(err.value)


def test_header_that_lies_about_size_is_rejected_before_decoding():
    png = _encode(Image.new("L", (8, 8)), "PNG")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = png[:8] + _chunk(b"IHDR", ihdr) + png[33:]
    with pytest.raises(ImageRejected) as err:
        read_header(data, LIMITS)
    assert err.value.code == "too_many_pixels"


def test_truncated_png_is_rejected():
    data = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), np.uint8)), "PNG")
    with pytest.raises(ImageRejected) as err:
        decode_image(data[: len(data) // 2], LIMITS)
    assert err.value.code == "truncated"


def _psd() -> bytes:
    # Photoshop's header (version 1, 3 channels, 64x64, 8 bits, RGB), three empty sections, raw
    # pixel data.
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 64, 64, 8, 3) + b"\0" * 14 + b"\0" * 64 * 64 * 3


def _fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             "NAXIS1  =                   64", "NAXIS2  =                   64", "END"]
    return "".join(c.ljust(80) for c in cards).ljust(2880).encode() + b"\0" * 4096


@pytest.mark.parametrize(
    "fmt, plugin, make",
    [
        ("EPS", "EpsImagePlugin.EpsImageFile", lambda: _encode(Image.new("RGB", (8, 8)), "EPS")),
        ("DDS", "DdsImagePlugin.DdsImageFile", lambda: _encode(Image.new("RGBA", (8, 8)), "DDS")),
        ("PSD", "PsdImagePlugin.PsdImageFile", _psd),
        ("FITS", "FitsImagePlugin.FitsImageFile", _fits),
    ],
)
def test_other_formats_never_reach_their_parsers(monkeypatch, fmt, plugin, make):
    import importlib

    data = make()
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow alone would parse it
    module, cls = plugin.split(".")
    parsed = []
    monkeypatch.setattr(getattr(importlib.import_module(f"PIL.{module}"), cls), "_open", lambda self: parsed.append(fmt))
    with pytest.raises(ImageRejected) as err:
        decode_image(data, LIMITS)
    assert err.value.code == "not_an_image" and "JPEG, PNG" in str(err.value)
    assert parsed == []


@pytest.mark.parametrize(
    "exc, code",
    [
        (OSError("image file is truncated"), "truncated"),
        (EOFError(), "truncated"),
        (SyntaxError("broken PNG file"), "truncated"),
        (struct.error("unpack requires a buffer of 4 bytes"), "truncated"),
        (ValueError("Decompressed data too large"), "corrupt"),
        (IndexError("list index out of range"), "corrupt"),
        (KeyError("tag"), "corrupt"),
        (TypeError("bad operand"), "corrupt"),
        (ZeroDivisionError("division by zero"), "corrupt"),
        (NotImplementedError("Unimplemented pixel format"), "corrupt"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
)
def test_every_decoder_failure_is_a_permanent_rejection(monkeypatch, exc, code):
    from PIL import ImageFile

    def fail(self):
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(ImageRejected) as err:
        decode_image(_encode(Image.new("RGB", (8, 8)), "PNG"), LIMITS)
    assert err.value.code == code and type(exc).__name__ in str(err.value)
    assert isinstance(err.value, PermanentError) and not isinstance(err.value, TransientError)


def test_decoder_reason_is_bounded(monkeypatch):
    from PIL import ImageFile

    def fail(self):
        raise ValueError("x" * 100_000)

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(ImageRejected) as err:
        decode_image(_encode(Image.new("RGB", (8, 8)), "PNG"), LIMITS)
    assert len(str(err.value)) < 300


def test_out_of_memory_is_not_blamed_on_the_file(monkeypatch):
    from PIL import ImageFile

    def fail(self):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(MemoryError):
        decode_image(_encode(Image.new("RGB", (8, 8)), "PNG"), LIMITS)


# ---- headers and conversions without full-size copies ------------------------------------


@pytest.mark.parametrize(
    "img, decoded, pixels",
    [
        (Image.new("L", (30, 20)), 600, 1800),
        (Image.new("I;16", (30, 20)), 1200, 1800),
        (Image.new("RGB", (30, 20)), 2400, 1800),  # Pillow keeps RGB as RGBX
        (Image.new("RGBA", (30, 20)), 2400, 2400),
        (Image.new("P", (30, 20)), 600, 1800),
    ],
    ids=lambda v: v.mode if isinstance(v, Image.Image) else "",
)
def test_header_tells_the_bytes_decoding_takes(img, decoded, pixels):
    header = read_header(_encode(img, "PNG" if img.mode != "I;16" else "TIFF"), LIMITS)
    assert (header.width, header.height) == (30, 20)
    assert header.decoded_bytes == decoded and header.pixel_bytes() == pixels
    assert header.pixel_bytes("mask") == 600 and header.pixel_bytes("rgba") == 2400


def test_16bit_scaling_is_exact_for_every_value():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out = decode_image(_encode(Image.fromarray(values), "PNG"), LIMITS).pixels[..., 0]
    expected = np.clip(values.astype(np.float64) * (255.0 / 65535.0) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(out, expected)


def png_of_one_colour(width: int, height: int, bit_depth: int, colour_type: int, pixel: bytes) -> bytes:
    """A PNG of one colour written row by row, never holding the image: deflate's ~1000:1 on
    constant rows makes a 7000 x 7000 16-bit RGBA image 381 KB (the issue's bomb)."""
    row = b"\0" + pixel * width
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    plte = _chunk(b"PLTE", b"\0\0\0\x10\x20\x30") + _chunk(b"tRNS", b"\0") if colour_type == 3 else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


_PEAK_SCRIPT = """
import sys
from pathlib import Path
from studioline.shared.config import LimitSettings
from studioline.shared.imageio import decode_image
def kb(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))
data = Path(sys.argv[1]).read_bytes()
before = kb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
pixels = decode_image(data, LimitSettings()).pixels
print((kb("VmHWM") - before) * 1024, pixels.shape[2])
"""


@pytest.mark.parametrize(
    "bit_depth, colour_type, pixel, channels",
    [
        (16, 6, b"\x80\x00\x40\x00\x20\x00\xff\xff", 3),  # 16-bit RGBA, opaque
        (16, 0, b"\x80\x00", 3),  # 16-bit grey
        (8, 3, b"\x01", 3),  # palette, transparency on an index no pixel uses
        (8, 3, b"\x00", 4),  # palette, every pixel transparent
    ],
    ids=["rgba16", "grey16", "palette", "palette-alpha"],
)
def test_decoding_takes_no_more_than_the_header_says(tmp_path, bit_depth, colour_type, pixel, channels):
    """Peak RSS while decoding stays within Pillow's buffers and the result (what the memory
    budget counts for the decoder), with a band of rows to spare: no full-size float or second
    RGBA copy. Before, a 16-bit grey image took 8 bytes a pixel more; a 16-bit RGBA one 11."""
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read the RSS high-water mark")
    path = tmp_path / "bomb.png"
    path.write_bytes(png_of_one_colour(4000, 4000, bit_depth, colour_type, pixel))
    header = read_header(path.read_bytes(), LIMITS)
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    growth, got_channels = map(int, proc.stdout.split())
    assert got_channels == channels
    assert growth < header.decoded_bytes + header.pixel_bytes() + 24e6, f"{growth / 1e6:.0f} MB"


def test_palette_transparency_that_no_pixel_uses_is_dropped():
    img = Image.new("P", (16, 16), 1)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    out = decode_image(_encode(img, "PNG", transparency=0), LIMITS)
    assert out.pixels.shape == (16, 16, 3) and tuple(out.pixels[0, 0]) == (0, 255, 0)


def test_alpha_always_gives_rgba():
    opaque = decode_image(_encode(Image.fromarray(_gradient()), "PNG"), LIMITS, alpha="always").pixels
    assert opaque.shape == (48, 64, 4) and opaque[..., 3].min() == 255
    grey16 = decode_image(_encode(Image.new("I;16", (8, 4), 65535), "PNG"), LIMITS, alpha="always").pixels
    assert grey16.shape == (4, 8, 4) and grey16.min() == 255


def test_masks_from_16bit_and_palette_files():
    grey16 = np.full((6, 10), 65535, np.uint16)
    grey16[:, :5] = 0
    mask = decode_mask(_encode(Image.fromarray(grey16), "PNG"), LIMITS)
    assert mask.shape == (6, 10) and mask[0, 0] == 0 and mask[0, 9] == 255
    pal = Image.new("P", (10, 6), 1)
    pal.putpalette([0, 0, 0, 90, 90, 90] + [0] * 762)
    pal.paste(0, (0, 0, 5, 6))
    mask = decode_mask(_encode(pal, "PNG", transparency=0), LIMITS)
    assert mask[0, 0] == 0 and mask[0, 9] == 255  # the alpha, not the grey
