"""Decoding untrusted image bytes into numpy arrays, and encoding results.

Every input is checked before its pixels are decoded: byte size, format, pixel count and side
length come from the header alone (`read_header`, which also tells how many bytes decoding will
take, for the memory budget). Only the line's own formats are ever parsed. Orientation from EXIF
is applied, and the many modes a file can come in (CMYK, 16-bit, palette, grayscale, with or
without alpha) are converted on purpose to 8-bit RGB or RGBA, the two layouts the steps work on,
a band of rows at a time, so that no full-size temporary (a float copy of a 16-bit image, a
second RGBA copy of a palette image) is ever made. Whatever Pillow raises on the bytes is an
ImageRejected: a bad file is never worth a retry.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from studioline.shared.config import LimitSettings
from studioline.shared.errors import ImageRejected

# What Image.open may try: the line's formats and no others, so that no other parser (EPS hands
# files to Ghostscript; PSD, FITS, DDS...) ever reads an untrusted header. MPO, JPEG's
# multi-picture form, comes back from Pillow's JPEG opener.
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Encoded bytes per pixel to expect at most, by (format, channels): about 1.5x the largest of 12
# C2 photos (1-4 MP) as written by encode_image (PNG mask 0.25, RGB 1.08, RGBA 1.44; JPEG 0.32).
ENCODED_BYTES_PER_PIXEL = {("png", 1): 0.4, ("png", 3): 1.6, ("png", 4): 2.2, ("jpeg", 3): 0.5, ("webp", 3): 0.5}

# Modes that carry alpha, and the wide grey modes scaled (not clipped) to 8 bits.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_GREY = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})
# Pixels converted at a time: the temporaries of one band stay a few MB at any image size.
_BAND_PIXELS = 1 << 20
# Pillow's own words on a bad file, at most this long, in the reason.
_DETAIL_CHARS = 200
# What truncated or cut streams raise; anything else a decoder raises is a corrupt file.
_TRUNCATION_ERRORS = (OSError, EOFError, SyntaxError, struct.error)


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # HxWx3 RGB or HxWx4 RGBA, uint8
    format: str
    sha256: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass(frozen=True)
class Header:
    """What an image's header says, before any pixel is decoded."""

    format: str
    width: int
    height: int
    mode: str  # Pillow's mode for the decoded pixels
    has_alpha: bool
    # What Pillow allocates to decode it: width x height x channels x bytes per sample, a pixel
    # of several channels taking four bytes (Pillow keeps RGB as RGBX).
    decoded_bytes: int

    def pixel_bytes(self, pixels: str = "rgb") -> int:
        """The 8-bit array a step is handed for it, as an artifact kind's `pixels` decodes: one
        channel for a mask; four where the file can carry alpha (whether it hides anything is
        known only after decoding), else three."""
        channels = 1 if pixels == "mask" else 4 if self.has_alpha or pixels == "rgba" else 3
        return self.width * self.height * channels


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_header(data: bytes, limits: LimitSettings) -> Header:
    """Checks the bytes and the header against the limits; decodes nothing."""
    img = _open(data, limits)
    with img:
        try:
            mode = ImageMode.getmode(img.mode)
            per_pixel = 4 if len(mode.bands) > 1 else np.dtype(mode.typestr).itemsize
        except Exception as exc:  # a mode Pillow cannot describe
            raise _rejected("unreadable image header", exc) from None
        return Header(img.format, img.width, img.height, img.mode, _may_have_alpha(img), img.width * img.height * per_pixel)


def decode_image(data: bytes, limits: LimitSettings, *, alpha: Literal["auto", "always"] = "auto") -> DecodedImage:
    """Checks and decodes image bytes; raises ImageRejected with a reason a person can act on.
    alpha "auto": RGBA where the alpha hides something, else RGB; "always": RGBA."""
    img = _open(data, limits)
    with img:
        pixels = _decode(img, lambda im: _to_rgb_or_rgba(im, alpha == "always"))
    return DecodedImage(pixels=pixels, format=img.format, sha256=sha256_hex(data))


def decode_mask(data: bytes, limits: LimitSettings) -> np.ndarray:
    """A mask artifact: any image, reduced to one 8-bit channel (alpha if it hides anything,
    else luma)."""
    img = _open(data, limits)
    with img:
        return _decode(img, _to_mask)


def _open(data: bytes, limits: LimitSettings) -> Image.Image:
    if not data:
        raise ImageRejected("empty file: zero bytes received", "empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"file too large: {len(data)} bytes, limit is {limits.max_bytes}", "too_large")
    try:
        with warnings.catch_warnings():
            # Pillow warns past its pixel limit (ours decides below) and raises past twice that.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(
            f"not an image: the bytes are none of the accepted formats ({', '.join(OPEN_FORMATS)})", "not_an_image"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {_detail(exc)}", "too_many_pixels") from None
    except MemoryError:
        raise
    except Exception as exc:  # a header Pillow cannot parse (a zTXt or iCCP bomb, a lying size...)
        raise _rejected("unreadable image header", exc) from None
    width, height = img.size
    if width * height > limits.max_pixels:
        img.close()
        raise ImageRejected(
            f"too many pixels: {width}x{height} = {width * height}, limit is {limits.max_pixels}", "too_many_pixels"
        )
    if max(width, height) > limits.max_side:
        img.close()
        raise ImageRejected(f"image side too long: {width}x{height}, limit is {limits.max_side} px", "too_large")
    return img


def _decode(img: Image.Image, convert) -> np.ndarray:
    fmt = img.format
    try:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an upright image
        return convert(img)
    except MemoryError:
        raise
    except Exception as exc:  # anything a decoder raises on these bytes is about these bytes
        raise _rejected(f"corrupt or truncated {fmt} file", exc) from None


def _rejected(what: str, exc: Exception) -> ImageRejected:
    code = "truncated" if isinstance(exc, _TRUNCATION_ERRORS) else "corrupt"
    return ImageRejected(f"{what}: {_detail(exc)}", code)


def _detail(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _may_have_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def _alpha_hides_something(img: Image.Image) -> bool:
    """Whether a loaded image's alpha is below 255 anywhere, from Pillow's extrema and histogram
    (no copy of the pixels)."""
    if img.mode in _ALPHA_MODES:
        return img.getextrema()[-1][0] < 255
    if img.mode == "P" and "transparency" in img.info:
        used = [i for i, n in enumerate(img.histogram()) if n]
        t = img.info["transparency"]
        if isinstance(t, int):
            return t in used
        return any(i < len(t) and t[i] < 255 for i in used)  # bytes: one alpha per palette index
    return False


def _bands(img: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    w, h = img.size
    rows = max(1, _BAND_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        yield y, img.crop((0, y, w, min(h, y + rows)))


def _grey_peak(img: Image.Image) -> float:
    """What maps to 255 in a wide grey image: 16-bit full range; a 32-bit one's 65535 when it
    goes above 255 (16-bit data widened), else 255; a float one's 1.0."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode == "F":
        return 1.0
    return 65535.0 if img.getextrema()[1] > 255 else 255.0


def _grey8(band: Image.Image, peak: float) -> np.ndarray:
    a = np.asarray(band)
    if band.mode.startswith("I;16"):
        # round(x * 255 / 65535) in integers (65535 = 255 * 257), in place.
        wide = a.astype(np.uint32)
        wide += 128
        wide //= 257
        return wide.astype(np.uint8)
    return np.clip(a * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb_or_rgba(img: Image.Image, rgba: bool) -> np.ndarray:
    w, h = img.size
    if img.mode in _WIDE_GREY:
        # 16/32-bit or float grayscale: the full range scaled down to 8 bits instead of clipped.
        peak = _grey_peak(img)
        out = np.empty((h, w, 4 if rgba else 3), np.uint8)
        if rgba:
            out[..., 3] = 255
        for y, band in _bands(img):
            out[y : y + band.height, :, :3] = _grey8(band, peak)[..., None]
        return out
    # An alpha channel that hides nothing is dropped, unless RGBA is asked for.
    target = "RGBA" if rgba or _alpha_hides_something(img) else "RGB"
    out = np.empty((h, w, len(target)), np.uint8)
    for y, band in _bands(img):
        out[y : y + band.height] = np.asarray(band if band.mode == target else band.convert(target))
    return out


def _to_mask(img: Image.Image) -> np.ndarray:
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    if img.mode in _WIDE_GREY:
        peak = _grey_peak(img)
        for y, band in _bands(img):
            out[y : y + band.height] = _grey8(band, peak)
    elif _alpha_hides_something(img):
        for y, band in _bands(img):
            rgba = band if band.mode in _ALPHA_MODES else band.convert("RGBA")
            out[y : y + band.height] = np.asarray(rgba.getchannel("A"))
    else:
        for y, band in _bands(img):
            out[y : y + band.height] = np.asarray(band.convert("L"))
    return out


def encode_image(pixels: np.ndarray, fmt: str = "png", quality: int = 92) -> bytes:
    """Encodes HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA) uint8 arrays."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=3)
    elif fmt == "jpeg":
        if img.mode == "RGBA":
            raise ValueError("JPEG cannot hold alpha: encode RGBA as png")
        img.save(buf, format="JPEG", quality=quality, optimize=False)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=quality)
    else:
        raise ValueError(f"unknown output format {fmt}")
    return buf.getvalue()
