"""Matting: a (soft) object mask -> trimap -> alpha (pymatting) -> halo-free RGBA cut-out.

Trimaps are HxW uint8 with 0 = background, 255 = foreground and anything else (128 here)
unknown. The solvers run on the bounding box of the unknown region only, at a capped
resolution; at full resolution the known regions stay exact and only the unknown band takes
the upsampled alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pymatting import estimate_alpha_cf, estimate_alpha_knn, estimate_alpha_lkm, estimate_foreground_ml

UNKNOWN = 128
SOLVERS = {"cf": estimate_alpha_cf, "knn": estimate_alpha_knn, "lkm": estimate_alpha_lkm}
# Context kept around the unknown region when cropping: covers the solvers' windows
# (closed-form r=1 needs 2 px; large-kernel matting's default r=10 needs 20).
CROP_MARGIN = 20


@dataclass
class Matte:
    rgba: np.ndarray  # HxWx4 uint8 cut-out, colours re-estimated under the alpha
    alpha: np.ndarray  # HxW float32 in [0, 1]
    trimap: np.ndarray  # HxW uint8 {0, 128, 255}

    @property
    def unknown_fraction(self) -> float:
        return float(np.mean(self.trimap == UNKNOWN))


def band_px(shape: tuple[int, ...], band: float, min_band_px: int = 2) -> int:
    """Half-width of the unknown band in pixels for an image of this shape."""
    return max(min_band_px, round(band * max(shape[:2])))


def _known_core(inside: np.ndarray, r: int, core_px: float) -> np.ndarray:
    """Pixels of a region farther than r from its edge, plus the medial line (ridge of the
    distance to the edge) of its parts too thin for that, where at least core_px inside."""
    d = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    ridge = (d >= cv2.dilate(d, np.ones((3, 3), np.uint8))) & (d >= core_px)
    return (d > r) | ridge


def trimap_from_mask(
    mask: np.ndarray,
    *,
    band: float = 0.01,
    min_band_px: int = 2,
    fg_level: int = 230,
    bg_level: int = 25,
    core_px: float = 3.0,
) -> np.ndarray:
    """Trimap from an HxW uint8 mask: foreground = the confident region eroded by the band,
    background = outside the mask dilated by the band, unknown in between (also wherever a
    soft mask is unsure). Leaves, straps and gaps thinner than the band keep their medial line
    known, so the solver has something to propagate from instead of filling them in. The
    frame is no edge: an object cut by it stays opaque up to it."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be HxW uint8, got {mask.shape} {mask.dtype}")
    r = band_px(mask.shape, band, min_band_px)
    trimap = np.full(mask.shape, UNKNOWN, np.uint8)
    trimap[_known_core(mask >= fg_level, r, core_px)] = 255
    trimap[_known_core(mask <= bg_level, r, core_px)] = 0
    return trimap


def _bbox(region: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)),
    )


def _downscale(image: np.ndarray, trimap: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and trimap at a long side of at most max_side; a low-res pixel is known only
    where every full-res pixel under it is known the same way."""
    h, w = trimap.shape
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    t = cv2.resize(trimap.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small_trimap = np.full(t.shape, UNKNOWN, np.uint8)
    small_trimap[t >= 255.0 - 1e-3] = 255
    small_trimap[t <= 1e-3] = 0
    return small, small_trimap


def _solve(image: np.ndarray, trimap: np.ndarray, method: str) -> np.ndarray:
    """pymatting on the bounding box of the unknown region; alpha for the whole frame."""
    alpha = (trimap == 255).astype(np.float32)
    unknown = (trimap != 0) & (trimap != 255)
    if not unknown.any():
        return alpha
    box = _bbox(unknown, CROP_MARGIN)
    crop_t = trimap[box]
    t = np.where(crop_t == 255, 1.0, np.where(crop_t == 0, 0.0, 0.5))
    has_fg, has_bg = (crop_t == 255).any(), (crop_t == 0).any()
    if not (has_fg and has_bg):
        # Nothing to propagate between: unknown pixels join the one known side (none: transparent).
        if has_fg:
            alpha[box] = 1.0
        return alpha
    a = SOLVERS[method](image[box].astype(np.float64) / 255.0, t)
    alpha[box] = np.where(unknown[box], a, alpha[box])
    return alpha


def estimate_alpha(
    image: np.ndarray, trimap: np.ndarray, *, method: str = "cf", max_side: int = 1024
) -> np.ndarray:
    """HxW float32 alpha in [0, 1] for an RGB uint8 image and a trimap. Above max_side the
    solver runs on a downscaled copy; its alpha is upsampled into the unknown region only."""
    if method not in SOLVERS:
        raise ValueError(f"unknown matting method {method!r}; choose one of {', '.join(SOLVERS)}")
    image = image[..., :3]
    h, w = trimap.shape
    if max(h, w) <= max_side:
        return _solve(image, trimap, method)
    small, small_trimap = _downscale(image, trimap, max_side)
    up = cv2.resize(_solve(small, small_trimap, method), (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = (trimap == 255).astype(np.float32)
    unknown = (trimap != 0) & (trimap != 255)
    alpha[unknown] = np.clip(up[unknown], 0.0, 1.0)
    return alpha


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, max_side: int = 1024) -> np.ndarray:
    """Foreground colours (HxWx3 uint8) under the alpha, by pymatting's multi-level estimate,
    so that the background does not bleed into the edge (no halo). Opaque pixels keep the
    image's colours exactly; the estimate replaces them where 0 <= alpha < 1 near the edge."""
    image = image[..., :3]
    out = image.copy()
    soft = (alpha > 0.0) & (alpha < 1.0)
    if not soft.any():
        return out
    box = _bbox(soft, CROP_MARGIN)
    crop = image[box].astype(np.float32) / 255.0
    crop_alpha = alpha[box]
    ch, cw = crop_alpha.shape
    scale = min(1.0, max_side / max(ch, cw))
    if scale < 1.0:
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        fg = estimate_foreground_ml(
            cv2.resize(crop, size, interpolation=cv2.INTER_AREA),
            cv2.resize(crop_alpha, size, interpolation=cv2.INTER_AREA),
        )
        fg = cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
    else:
        fg = estimate_foreground_ml(crop, crop_alpha)
    fg = np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8)
    region = out[box]
    replace = crop_alpha < 1.0
    region[replace] = fg[replace]
    return out


def cutout(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    method: str = "cf",
    band: float = 0.01,
    min_band_px: int = 2,
    fg_level: int = 230,
    bg_level: int = 25,
    max_side: int = 1024,
) -> Matte:
    """RGBA cut-out at the image's full resolution from an HxW uint8 (soft) object mask."""
    image = image[..., :3]
    trimap = trimap_from_mask(mask, band=band, min_band_px=min_band_px, fg_level=fg_level, bg_level=bg_level)
    alpha = estimate_alpha(image, trimap, method=method, max_side=max_side)
    fg = estimate_foreground(image, alpha, max_side=max_side)
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Matte(rgba=np.dstack([fg, a8]), alpha=alpha, trimap=trimap)
