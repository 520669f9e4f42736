"""Catalogue composites: a cut-out trimmed, scaled to a fill ratio, centred on a plain
background, with a soft contact shadow under its base.

Colour arithmetic runs on premultiplied float32 so scaling never drags the dark (or stale)
colour of transparent pixels into the product's edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.shared.errors import PermanentError

Box = tuple[int, int, int, int]

# Alpha at or below this counts as empty when trimming: matting leaves faint noise far from
# the product that would otherwise inflate its bounding box.
TRIM_ALPHA = 8
# Contact shadow: a band this fraction of the product's height thick just under its bottom edge,
# blurred by this fraction of its longer side.
SHADOW_BAND = 0.03
SHADOW_BLUR = 0.02


def alpha_bbox(alpha: np.ndarray, threshold: int = TRIM_ALPHA) -> Box | None:
    pts = cv2.findNonZero((alpha > threshold).astype(np.uint8))
    return None if pts is None else tuple(int(v) for v in cv2.boundingRect(pts))


def trim_premultiplied(cutout: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 RGBA -> hxwx4 float32 premultiplied RGBA in [0, 1], trimmed to the alpha's box."""
    if cutout.ndim != 3 or cutout.shape[2] != 4 or cutout.dtype != np.uint8:
        raise PermanentError(f"catalog-generator needs an HxWx4 uint8 RGBA cut-out, got {cutout.shape} {cutout.dtype}")
    box = alpha_bbox(cutout[..., 3])
    if box is None:
        raise PermanentError(
            "catalog-generator: the cut-out's alpha channel is empty (fully transparent), so there is no "
            "product to place; check the segmentation or matting step's output"
        )
    x, y, w, h = box
    crop = cutout[y : y + h, x : x + w].astype(np.float32) / 255.0
    crop[..., :3] *= crop[..., 3:]
    return crop


def scale_premultiplied(product: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes premultiplied RGBA to (w, h), keeping colour <= alpha after cubic overshoot."""
    w, h = size
    shrinking = w * h < product.shape[0] * product.shape[1]
    out = cv2.resize(product, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    np.clip(out, 0.0, 1.0, out=out)
    np.minimum(out[..., :3], out[..., 3:], out=out[..., :3])
    return out


def contact_shadow(alpha: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Shadow strength in [0, 1] for a product with this (scaled) alpha, and the (x, y) of the
    shadow array's top-left corner relative to the product's.

    A thin band lies just under the silhouette's bottom edge (the lowest opaque pixel of every
    column) and is blurred, so the shadow is darkest where the product meets the floor and
    fades below it; a hem that sits higher than a sleeve gets its own. Exactly 0 outside the
    returned array.
    """
    th, tw = alpha.shape
    solid = alpha >= 0.5
    cols = np.flatnonzero(solid.any(axis=0))
    if cols.size == 0:
        return np.zeros((1, 1), np.float32), (0, 0)
    bottom = th - 1 - np.argmax(solid[::-1, cols], axis=0)  # lowest solid row per column
    band = max(2, round(SHADOW_BAND * th))
    sigma = max(1.5, SHADOW_BLUR * max(tw, th))
    pad = int(np.ceil(3 * sigma)) + 1
    top = int(bottom.min()) - pad
    rows = np.arange(top, int(bottom.max()) + band + pad + 1)[:, None]
    local = np.zeros((rows.shape[0], tw + 2 * pad), np.float32)
    local[:, cols + pad] = (rows >= bottom[None, :]) & (rows < bottom[None, :] + band)
    # The shadow is smooth: blur a copy shrunk to sigma ~3 px and enlarge it, ~k^2 times cheaper.
    k = max(1, int(sigma // 3))
    small = cv2.resize(local, (-(-local.shape[1] // k), -(-local.shape[0] // k)), interpolation=cv2.INTER_AREA)
    r = int(np.ceil(3 * sigma / k))
    small = cv2.GaussianBlur(small, (2 * r + 1, 2 * r + 1), sigma / k, borderType=cv2.BORDER_CONSTANT)
    local = cv2.resize(small, (local.shape[1], local.shape[0]), interpolation=cv2.INTER_LINEAR)
    return local / max(float(local.max()), 1e-6), (-pad, top)


def compose(
    product: np.ndarray,
    canvas_size: tuple[int, int],
    fill: float,
    background: tuple[int, int, int],
    shadow: bool,
    shadow_opacity: float,
) -> tuple[np.ndarray, Box]:
    """Places a trimmed premultiplied product (see trim_premultiplied) on a (W, H) canvas.

    The product is scaled so that it spans `fill` of the canvas along the limiting side and
    centred. Returns the RGB uint8 canvas and the product's box on it. Only the region the
    product and its shadow touch is computed in float; the rest is the background as is.
    """
    width, height = canvas_size
    ph, pw = product.shape[:2]
    s = fill * min(width / pw, height / ph)
    tw, th = max(1, round(pw * s)), max(1, round(ph * s))
    scaled = scale_premultiplied(product, (tw, th))
    x0, y0 = (width - tw) // 2, (height - th) // 2
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background
    rx0, ry0, rx1, ry1 = x0, y0, x0 + tw, y0 + th
    if shadow and shadow_opacity > 0:
        shade, (dx, dy) = contact_shadow(scaled[..., 3])
        sx, sy = x0 + dx, y0 + dy
        rx0, ry0 = max(0, min(rx0, sx)), max(0, min(ry0, sy))
        rx1, ry1 = min(width, max(rx1, sx + shade.shape[1])), min(height, max(ry1, sy + shade.shape[0]))
    region = np.empty((ry1 - ry0, rx1 - rx0, 3), np.float32)
    region[:] = np.float32(background) / 255.0
    if shadow and shadow_opacity > 0:
        # Rows and columns of the shadow that fall inside the region (the canvas, clipped).
        t, l = max(sy, ry0), max(sx, rx0)
        b, r = min(sy + shade.shape[0], ry1), min(sx + shade.shape[1], rx1)
        dark = 1.0 - shadow_opacity * shade[t - sy : b - sy, l - sx : r - sx, None]
        region[t - ry0 : b - ry0, l - rx0 : r - rx0] *= dark
    roi = region[y0 - ry0 : y0 - ry0 + th, x0 - rx0 : x0 - rx0 + tw]
    roi[:] = roi * (1.0 - scaled[..., 3:]) + scaled[..., :3]  # premultiplied "over"
    canvas[ry0:ry1, rx0:rx1] = (region * 255.0 + 0.5).astype(np.uint8)
    return canvas, (x0, y0, tw, th)


def cutout_rgb_alpha(cutout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An RGBA cut-out as its RGB and alpha, checked (try-on's garment input)."""
    if cutout.ndim != 3 or cutout.shape[2] != 4 or cutout.dtype != np.uint8:
        raise PermanentError(f"catalog-generator needs an HxWx4 uint8 RGBA cut-out, got {cutout.shape} {cutout.dtype}")
    if alpha_bbox(cutout[..., 3]) is None:
        raise PermanentError("catalog-generator: the cut-out's alpha channel is empty, so there is no garment to put on")
    return np.ascontiguousarray(cutout[..., :3]), np.ascontiguousarray(cutout[..., 3])


def fit_on_canvas(image: np.ndarray, canvas_size: tuple[int, int], background: tuple[int, int, int]) -> np.ndarray:
    """The whole RGB image scaled to fit a (W, H) canvas of the background colour, centred."""
    width, height = canvas_size
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    scaled = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background
    x0, y0 = (width - tw) // 2, (height - th) // 2
    canvas[y0 : y0 + th, x0 : x0 + tw] = scaled
    return canvas


def replace_backdrop(photo: np.ndarray, person: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """The photo with everything but the person (soft mask in [0, 1]) turned to the colour."""
    a = np.clip(person, 0.0, 1.0)[..., None]
    return (photo * a + np.float32(background) * (1.0 - a) + 0.5).astype(np.uint8)
