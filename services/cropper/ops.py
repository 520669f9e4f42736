"""Crop windows of a fixed aspect ratio: around a product mask, or where the saliency is.

Boxes are (x, y, w, h) in pixels of the image; a product box may extend past the image and
is then filled by `crop_padded`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from studioline.shared.imageops import backdrop_colour

Box = tuple[int, int, int, int]

# The saliency search runs on a map whose longer side is at most this (the model's own
# resolution is 224, so finer grids only add cost).
SEARCH_SIDE = 256


def largest_window(width: int, height: int, aspect: float) -> tuple[int, int]:
    """(w, h) of the largest window of the given aspect ratio that fits in the image."""
    if width / height >= aspect:
        return max(1, min(width, round(height * aspect))), height
    return width, max(1, min(height, round(width / aspect)))


def saliency_mass(saliency: np.ndarray, centre_sigma: float) -> np.ndarray:
    """Turns a saliency map into the non-negative mass a crop window should cover.

    The map's floor (its 10th percentile, where plain background sits) counts as nothing, so a
    window is not rewarded for area alone. A Gaussian centre prior (sigma a fraction of each
    side; 0 turns it off) weights the rest: on MIT1003 fixations the img-focus map alone loses
    to a plain centre crop, while map x prior beats it (see tests/unit/test_cropper.py).
    """
    sal = saliency.astype(np.float32, copy=False)
    mass = np.clip(sal - np.percentile(sal, 10), 0.0, None)
    if centre_sigma > 0:
        h, w = mass.shape
        gy = np.exp(-0.5 * ((np.arange(h) + 0.5 - h / 2) / (centre_sigma * h)) ** 2)
        gx = np.exp(-0.5 * ((np.arange(w) + 0.5 - w / 2) / (centre_sigma * w)) ** 2)
        mass *= np.outer(gy, gx).astype(np.float32)
    return mass


def covered_fraction(mass: np.ndarray, box: Box) -> float:
    """Share of the map's total inside the box (1 for an empty map)."""
    x, y, w, h = box
    total = float(mass.sum())
    return float(mass[max(y, 0) : y + h, max(x, 0) : x + w].sum()) / total if total > 0 else 1.0


def window_sums(integral: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """Sum of the map under every window position of size (w, h), from cv2.integral's output."""
    w, h = wh
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def best_window(
    saliency: np.ndarray,
    aspect: float,
    min_scale: float,
    keep: float,
    scales: int = 6,
) -> Box:
    """The window of `aspect` (w/h) that covers the most saliency mass.

    Scale 1 is the largest window that fits; the window may shrink down to `min_scale` of it,
    and does so to the smallest scale that still covers `keep` of what the best full-size
    window covers (so min_scale=1 only chooses the position). Ties go to the most central
    window, so a flat map gives the centre crop.
    """
    height, width = saliency.shape
    full_w, full_h = largest_window(width, height, aspect)
    f = min(1.0, SEARCH_SIDE / max(height, width))
    small_size = (max(1, round(width * f)), max(1, round(height * f)))
    small = cv2.resize(saliency.astype(np.float32), small_size, interpolation=cv2.INTER_AREA)
    integral = cv2.integral(small, sdepth=cv2.CV_64F)
    sh, sw = small.shape
    candidates = []  # (mass, box) from the largest scale down
    for scale in np.unique(np.linspace(1.0, min_scale, scales))[::-1]:
        w = max(1, round(full_w * scale))
        h = max(1, min(height, round(w / aspect))) if scale < 1 else full_h
        ws, hs = min(sw, max(1, round(w * f))), min(sh, max(1, round(h * f)))
        sums = window_sums(integral, (ws, hs))
        best = sums.max()
        # Among (near-)ties, the window whose centre is nearest the image centre.
        ys, xs = np.nonzero(sums >= best - 1e-6 * max(best, 1e-12))
        dist = (xs + ws / 2 - sw / 2) ** 2 + (ys + hs / 2 - sh / 2) ** 2
        i = int(np.argmin(dist))
        # Map the window's centre (not its corner) back to full size, where it is w x h.
        x = min(max(0, round((xs[i] + ws / 2) / f - w / 2)), width - w)
        y = min(max(0, round((ys[i] + hs / 2) / f - h / 2)), height - h)
        candidates.append((float(best), (x, y, w, h)))
    target = keep * candidates[0][0]
    return [box for mass, box in candidates if mass >= target][-1]


def mask_bbox(mask: np.ndarray, threshold: int = 128) -> Box | None:
    """(x, y, w, h) of the mask's pixels at or above threshold; None when there are none."""
    pts = cv2.findNonZero((mask >= threshold).astype(np.uint8))
    if pts is None:
        return None
    return tuple(int(v) for v in cv2.boundingRect(pts))


def product_window(mask: np.ndarray, aspect: float, margin: float) -> Box | None:
    """A window of `aspect` centred on the mask's bounding box, with at least `margin` (a
    fraction of the window's side) free on every side. It may extend past the image."""
    bbox = mask_bbox(mask)
    if bbox is None:
        return None
    bx, by, bw, bh = bbox
    inner = 1.0 - 2.0 * margin
    w = max(bw / inner, bh / inner * aspect)
    w = math.ceil(w)
    h = math.ceil(w / aspect)
    if h < bh / inner:  # rounding can leave the height a pixel short
        h = math.ceil(bh / inner)
        w = math.ceil(h * aspect)
    x = round(bx + bw / 2 - w / 2)
    y = round(by + bh / 2 - h / 2)
    return x, y, w, h


def crop_padded(image: np.ndarray, box: Box, colour) -> np.ndarray:
    """The box's pixels; the parts outside the image take the pad colour."""
    x, y, w, h = box
    height, width = image.shape[:2]
    out = np.empty((h, w) + image.shape[2:], image.dtype)
    out[...] = colour
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


def auto_pad_colour(image: np.ndarray, mask: np.ndarray | None) -> tuple[int, ...]:
    """The colour to pad a product crop with so the padding blends into the backdrop: the
    backdrop colour of the image's outermost pixels outside the mask, white when the mask
    covers them all."""
    colour = backdrop_colour(image, mask)
    return (255,) * image.shape[2] if colour is None else tuple(int(v) for v in colour)


def fit_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscales so the longer side is at most max_side (never upscales)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
