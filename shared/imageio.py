"""Decoding untrusted image bytes into numpy arrays, and encoding results.

Every input is checked before its pixels are decoded: byte size, format, pixel count and side
length come from the header alone. Orientation from EXIF is applied, and the many modes a file
can come in (CMYK, 16-bit, palette, grayscale, with or without alpha) are converted on purpose
to 8-bit RGB or RGBA, the two layouts the steps work on.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studioline.shared.config import LimitSettings
from studioline.shared.errors import ImageRejected

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Encoded bytes per pixel to expect at most, by (format, channels): about 1.5x the largest of 12
# C2 photos (1-4 MP) as written by encode_image (PNG mask 0.25, RGB 1.08, RGBA 1.44; JPEG 0.32).
ENCODED_BYTES_PER_PIXEL = {("png", 1): 0.4, ("png", 3): 1.6, ("png", 4): 2.2, ("jpeg", 3): 0.5, ("webp", 3): 0.5}


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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, limits: LimitSettings, *, keep_alpha: bool = True) -> DecodedImage:
    """Checks and decodes image bytes; raises ImageRejected with a reason a person can act on."""
    if not data:
        raise ImageRejected("empty file: zero bytes received", "empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            f"file too large: {len(data)} bytes, limit is {limits.max_bytes}", "too_large"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns and raises on decompression bombs; our own limit applies first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image: the bytes match no supported image format", "not_an_image")
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {exc}", "too_many_pixels")
    fmt = img.format or "unknown"
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected(f"unsupported image format {fmt}", "unsupported_format")
    width, height = img.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"too many pixels: {width}x{height} = {width * height}, limit is {limits.max_pixels}",
            "too_many_pixels",
        )
    if max(width, height) > limits.max_side:
        raise ImageRejected(
            f"image side too long: {width}x{height}, limit is {limits.max_side} px", "too_large"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        pixels = _to_rgb_or_rgba(img, keep_alpha)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt or truncated {fmt} file: {exc}", "truncated")
    return DecodedImage(pixels=pixels, format=fmt, sha256=sha256_hex(data))


def _to_rgb_or_rgba(img: Image.Image, keep_alpha: bool) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the full range down to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha and keep_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        if rgba[..., 3].min() == 255:  # an alpha channel that hides nothing is dropped
            return np.ascontiguousarray(rgba[..., :3])
        return rgba
    if mode == "CMYK":
        return np.asarray(img.convert("RGB"))
    return np.asarray(img.convert("RGB"))


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


def decode_mask(data: bytes, limits: LimitSettings) -> np.ndarray:
    """A mask artifact: any image, reduced to one 8-bit channel (alpha if present, else luma)."""
    px = decode_image(data, limits).pixels
    if px.ndim == 3 and px.shape[2] == 4:
        return np.ascontiguousarray(px[..., 3])
    return np.asarray(Image.fromarray(px).convert("L"))
