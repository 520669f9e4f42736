"""Hostile image files, crafted at run time: equivalents of what Pillow's and thumbor's test
corpora throw at a decoder (decompression bombs, 16-bit and palette oddities, truncated and
corrupt files, text and ICC chunks that inflate, huge dimensions in a tiny header, formats the
line does not take). Nothing here is a third-party file; `pillow_corpus` fetches Pillow's own
test images from its sdist on PyPI into a temporary folder when asked.

Each case: name -> Hostile(data, expect, note). `expect` is what a line that keeps its promises
does with it: "rejected" (dead-lettered / INVALID_ARGUMENT with a reason), "processed" (an odd
but valid image, converted), or "either" (valid but large: processed within the memory budget,
or rejected as over it).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Hostile:
    data: bytes
    expect: str  # "rejected", "processed" or "either"
    note: str


def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_of_rows(width: int, height: int, bit_depth: int, colour_type: int, row: bytes, extra: bytes = b"") -> bytes:
    """A PNG whose every row is `row` (its filter byte included): the first as given, the rest as
    PNG's Up filter of it (all zeros), so deflate reaches its 1032:1 and the bomb never exists
    uncompressed here."""
    z = zlib.compressobj(9)
    up = b"\x02" + bytes(len(row) - 1)
    idat = z.compress(row) + b"".join(z.compress(up) for _ in range(height - 1)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_16bit(side: int, colour_type: int) -> bytes:
    """A side x side 16-bit PNG of one colour: RGBA (6) or greyscale (0)."""
    pixel = {0: b"\x80\x00", 6: b"\x80\x00" * 3 + b"\xff\xff"}[colour_type]
    return png_of_rows(side, side, 16, colour_type, b"\x00" + pixel * side)


def photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A synthetic product shot: a gradient backdrop and a textured ellipse."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[...] = (235 - 30 * y / height)[..., None].astype(np.uint8)
    inside = ((x - width / 2) / (width / 3)) ** 2 + ((y - height / 2) / (height / 3)) ** 2 < 1
    img[inside] = rng.integers(40, 160, (int(inside.sum()), 3), dtype=np.uint8)
    return img


def encoded(pixels: np.ndarray | Image.Image, fmt: str, **kwargs) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def small_png(extra: bytes = b"") -> bytes:
    """A valid 64x48 RGB PNG with `extra` chunks before its pixels."""
    rgb = photo(64, 48)
    rows = b"".join(b"\x00" + r.tobytes() for r in rgb)
    ihdr = struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def inflating(size: int) -> bytes:
    """`size` zero bytes deflated (about 1000:1)."""
    z = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(z.compress(block) for _ in range(size >> 20)) + z.flush()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height over a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose SOF header now claims width x height."""
    out = bytearray(data)
    i = 2
    while i < len(out) - 9:
        marker, length = out[i + 1], struct.unpack(">H", out[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker")


def gif_with_screen(width: int, height: int) -> bytes:
    """A 1x1 GIF whose logical screen claims width x height (Pillow sizes the image by it)."""
    data = bytearray(encoded(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded(photo(8, 8), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def tiff_with_size(width: int, height: int) -> bytes:
    """A baseline TIFF (one strip of 8 bytes) claiming width x height."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 8)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(8)


def webp_with_canvas(width: int, height: int) -> bytes:
    """A VP8X WebP header claiming a width x height canvas, with a tiny real frame after it."""
    frame = encoded(photo(16, 16), "WEBP", quality=50)[12:]  # the VP8 chunk of a real 16x16
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_bad_exif() -> bytes:
    """A JPEG whose EXIF IFD claims 65535 entries and points past the end of the file."""
    jpeg = encoded(photo(), "JPEG", quality=85)
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 0xFFFF) + struct.pack(">HHII", 0x0112, 3, 1, 0x7FFFFFF0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def psd_header() -> bytes:
    """A Photoshop header: 8-bit RGB, 30000 x 30000, no data (a format the line does not take)."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 30000, 30000, 8, 3) + bytes(12)


def corrupt(data: bytes, start: float, n: int = 64, seed: int = 1) -> bytes:
    """`data` with `n` bytes from `start` (a fraction of its length) replaced by noise."""
    out = bytearray(data)
    at = int(len(out) * start)
    out[at:at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(out)


def cmyk_jpeg() -> bytes:
    return encoded(Image.fromarray(photo()).convert("CMYK"), "JPEG", quality=85)


def crafted() -> dict[str, Hostile]:
    """Every crafted case, built now (a few seconds; none over 440 KB)."""
    jpeg = encoded(photo(), "JPEG", quality=85)
    png = encoded(photo(), "PNG")
    palette = Image.fromarray(photo()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    trns = palette.copy()
    trns.info["transparency"] = 0
    frames = [Image.fromarray(photo(128, 128, seed=s)).convert("P") for s in range(60)]
    gif_anim = io.BytesIO()
    frames[0].save(gif_anim, format="GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    grey_f = Image.fromarray((photo()[..., 0] / 255.0).astype(np.float32), mode="F")
    cases = {
        # 16-bit bombs just under the 50 MP limit: small files, hundreds of MB decoded.
        "png_rgba16_7000": Hostile(png_16bit(7000, 6), "either", "7000x7000 16-bit RGBA PNG (394 KB, 392 MB of samples)"),
        "png_grey16_7000": Hostile(png_16bit(7000, 0), "either", "7000x7000 16-bit greyscale PNG (112 KB)"),
        "png_rgb8_7000": Hostile(png_of_rows(7000, 7000, 8, 2, b"\x00" + b"\x80\x60\x40" * 7000), "either",
                                 "7000x7000 8-bit RGB PNG (160 KB, 147 MB decoded)"),
        # Decompression bombs over the limit: the header alone must stop them.
        "png_bomb_1bit_40000": Hostile(png_of_rows(40000, 40000, 1, 0, b"\x00" + b"\x00" * 5000), "rejected",
                                       "40000x40000 1-bit PNG (1.6 GP)"),
        "png_header_100000": Hostile(png_header_only(100000, 100000), "rejected", "IHDR claims 100000x100000, 60-byte IDAT"),
        "png_side_20000x8": Hostile(png_of_rows(20000, 8, 8, 0, b"\x00" + b"\x80" * 20000), "rejected",
                                    "20000x8: few pixels, side over limits.max_side"),
        "jpeg_header_65500": Hostile(jpeg_with_size(jpeg, 65500, 65500), "rejected", "a 320x240 JPEG whose SOF claims 65500x65500"),
        "gif_screen_65535": Hostile(gif_with_screen(65535, 65535), "rejected", "1x1 GIF, logical screen 65535x65535"),
        "bmp_header_50000": Hostile(bmp_with_size(50000, 50000), "rejected", "8x8 BMP whose header claims 50000x50000"),
        "tiff_header_100000": Hostile(tiff_with_size(100000, 100000), "rejected", "TIFF claiming 100000x100000, 8 bytes of strip"),
        "webp_canvas_16383": Hostile(webp_with_canvas(16383, 16383), "rejected", "VP8X canvas 16383x16383 over a 16x16 frame"),
        # Chunks that inflate: Pillow's MAX_TEXT_CHUNK (1 MB) guards them, by raising ValueError.
        "png_ztxt_bomb": Hostile(small_png(chunk(b"zTXt", b"Comment\x00\x00" + inflating(64 << 20))), "rejected",
                                 "zTXt chunk inflating to 64 MB"),
        "png_itxt_bomb": Hostile(small_png(chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + inflating(64 << 20))), "rejected",
                                 "compressed iTXt chunk inflating to 64 MB"),
        "png_iccp_bomb": Hostile(small_png(chunk(b"iCCP", b"icc\x00\x00" + inflating(64 << 20))), "rejected",
                                 "iCCP profile inflating to 64 MB"),
        "png_20000_text_chunks": Hostile(small_png(b"".join(chunk(b"tEXt", b"k%d\x00v" % i) for i in range(20000))), "processed",
                                         "20,000 tEXt chunks before the pixels"),
        "png_chunk_length_2g": Hostile(PNG_SIGNATURE + png[8:33] + struct.pack(">I", 0x7FFFFFFF) + b"IDAT" + bytes(16),
                                       "rejected", "an IDAT chunk claiming 2 GB, 16 bytes present"),
        # Truncated and corrupt files.
        "png_truncated": Hostile(png[: len(png) // 3], "rejected", "a PNG cut at a third"),
        "jpeg_truncated": Hostile(jpeg[: len(jpeg) // 3], "rejected", "a JPEG cut at a third"),
        "png_bad_idat_crc": Hostile(png[:-16] + bytes(4) + png[-12:], "either", "the last IDAT's CRC zeroed (Pillow skips IDAT CRCs)"),
        "png_corrupt_idat": Hostile(corrupt(png, 0.5), "rejected", "64 bytes of noise in the middle of IDAT"),
        "jpeg_corrupt_scan": Hostile(corrupt(jpeg, 0.6), "either", "64 bytes of noise in the entropy-coded scan"),
        "jpeg_bad_exif": Hostile(jpeg_bad_exif(), "either", "EXIF IFD of 65535 entries pointing past the end"),
        "empty": Hostile(b"", "rejected", "zero bytes"),
        "svg": Hostile(b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>', "rejected", "SVG text"),
        # Formats the line does not take (Pillow opens them all without formats=).
        "psd_30000": Hostile(psd_header(), "rejected", "Photoshop header, 30000x30000"),
        "eps": Hostile(encoded(Image.fromarray(photo(32, 32)), "EPS"), "rejected", "EPS (PostScript)"),
        "ico": Hostile(encoded(Image.fromarray(photo(64, 64)), "ICO"), "rejected", "Windows icon"),
        "tga": Hostile(encoded(photo(), "TGA"), "rejected", "Targa"),
        "pcx": Hostile(encoded(photo(), "PCX"), "rejected", "PCX"),
        "dds": Hostile(encoded(Image.fromarray(photo(64, 64)).convert("RGBA"), "DDS"), "rejected", "DirectDraw surface"),
        # Odd but valid: converted to RGB/RGBA and processed.
        "jpeg_cmyk": Hostile(cmyk_jpeg(), "processed", "CMYK JPEG (Adobe, inverted)"),
        "tiff_cmyk": Hostile(encoded(Image.fromarray(photo()).convert("CMYK"), "TIFF"), "processed", "CMYK TIFF"),
        "png_palette": Hostile(encoded(palette, "PNG"), "processed", "16-colour palette PNG"),
        "png_palette_trns": Hostile(encoded(trns, "PNG", transparency=0), "processed", "palette PNG with a tRNS entry"),
        "png_palette_short_plte": Hostile(_short_plte(), "either", "palette indices past the end of a 2-entry PLTE"),
        "png_1bit": Hostile(encoded(Image.fromarray(photo()[..., 0] > 128), "PNG"), "processed", "1-bit PNG"),
        "png_grey16_small": Hostile(png_16bit(512, 0), "processed", "512x512 16-bit greyscale"),
        "png_la16": Hostile(png_of_rows(256, 256, 16, 4, b"\x00" + b"\x40\x00\x80\x00" * 256), "processed",
                            "16-bit grey+alpha, half transparent"),
        "tiff_float32": Hostile(encoded(grey_f, "TIFF"), "processed", "32-bit float greyscale TIFF (mode F)"),
        "tiff_int32": Hostile(encoded(Image.fromarray(photo()[..., 0].astype(np.int32) * 200, mode="I"), "TIFF"), "processed",
                              "32-bit integer greyscale TIFF (mode I)"),
        "gif_60_frames": Hostile(gif_anim.getvalue(), "processed", "animated GIF, 60 frames of 128x128"),
        "webp": Hostile(encoded(photo(), "WEBP"), "processed", "WebP"),
    }
    return cases


def _short_plte() -> bytes:
    """A 4-bit palette image whose PLTE has 2 entries while its pixels use 16."""
    rows = b"".join(b"\x00" + bytes((i * 17 + j) & 0xFF for j in range(32)) for i in range(48))
    ihdr = struct.pack(">IIBBBBB", 64, 48, 4, 3, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff") + \
        chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# Pillow's fuzzing finds and known-bad files: the names its test suite gives them.
PILLOW_HOSTILE = ("crash", "oom", "timeout", "bomb", "broken", "trunc", "overrun", "invalid", "_bad", "ossfuzz", "corrupt")


def pillow_corpus(folder: Path, max_bytes: int = 4 << 20) -> dict[str, bytes]:
    """Pillow's Tests/images from its sdist on PyPI (the installed version), fetched with pip into
    `folder` (a temporary one: never committed). Returns relative path -> bytes, every file up to
    `max_bytes`; an empty dict when pip cannot fetch it (offline)."""
    import PIL

    version = PIL.__version__
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"pillow=={version}", "--no-binary", ":all:", "--no-deps",
         "--quiet", "-d", str(folder)],
        capture_output=True, text=True, timeout=600,
    )
    sdists = sorted(folder.glob("pillow-*.tar.gz"))
    if proc.returncode != 0 and not sdists:
        print(f"Pillow's corpus not fetched: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return {}
    files = {}
    with tarfile.open(sdists[0]) as tar:
        for member in tar:
            path = member.name.split("/", 1)[-1]
            if member.isfile() and path.startswith("Tests/images/") and member.size <= max_bytes:
                files[path.removeprefix("Tests/images/")] = tar.extractfile(member).read()
    return files


def is_pillow_hostile(name: str) -> bool:
    return any(word in name.lower() for word in PILLOW_HOSTILE)
