"""Matting: a (soft) object mask -> trimap -> alpha -> halo-free RGBA cut-out, at full resolution.

Trimaps are HxW uint8 with 0 = background, 255 = foreground and anything else (128 here)
unknown. The trimap's unknown band follows the mask's uncertainty. The solvers run on the
bounding box of the unknown region only, scaled so that the unknown region has a bounded
number of pixels; the alpha comes back by guided upsampling on the full-res image, the known
regions stay exact. Foreground colours are re-estimated under the alpha (decontamination).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from pymatting import estimate_alpha_cf, estimate_alpha_knn, estimate_alpha_lkm, estimate_foreground_ml, ichol
from pymatting.alpha.estimate_alpha_sm import expand_trimap as _expand_trimap

from studioline.services.matting.ifm import estimate_alpha_ifm

UNKNOWN = 128
# The closed-form Laplacian's regulariser, pymatting's default. On alphamatting.com (30k pixels,
# expanded, clamped; Trimap1 / Trimap2 mean SAD) 1e-6 5.64 / 7.50 (at 60k), 1e-7 5.20 / 6.69,
# 1e-8 5.17 / 6.57, but at 1e-8 a grey high-contrast window's covariance determinant can round
# to exactly 0 (pymatting's cf_laplacian then divides by zero: seen on a C2 photo).
CF_EPSILON = 1e-7


def _preconditioner(matrix):
    """pymatting's incomplete Cholesky without its first, unshifted try: that try fails on many
    photos' Laplacians and prints a PERFORMANCE WARNING to stdout (into the service's JSON logs)
    before retrying with a shift. The shift changes only the preconditioner, not the solution."""
    return ichol(matrix, shifts=[1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0, 100.0])


def estimate_alpha_closed_form(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    return estimate_alpha_cf(image, trimap, preconditioner=_preconditioner, laplacian_kwargs={"epsilon": CF_EPSILON})


def estimate_alpha_cf_ifm(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """The mean of closed-form and information-flow alphas (the latter's solve starts from the
    former): their errors differ enough that the mean beats both (figures in docs/ARCHITECTURE.md)."""
    closed_form = estimate_alpha_closed_form(image, trimap)
    return 0.5 * (closed_form + estimate_alpha_ifm(image, trimap, x0=closed_form))


SOLVERS = {
    "cf": estimate_alpha_closed_form,
    "ifm": estimate_alpha_ifm,
    "cf+ifm": estimate_alpha_cf_ifm,
    "knn": estimate_alpha_knn,
    "lkm": estimate_alpha_lkm,
}
# Context kept around the unknown region when cropping: covers the solvers' windows
# (closed-form r=1 needs 2 px; large-kernel matting's default r=10 needs 20).
CROP_MARGIN = 20
# Smallest half-size (px) of the window over which the image's texture around an edge is averaged.
TEXTURE_WINDOW = 7
# The band's width varies smoothly along the edge: above this long side it is measured on a
# downscaled copy of the mask and image.
RADIUS_WORK_SIDE = 1024
# Mean image gradient (per pixel, intensities 0..1) around an edge at which it counts as fully
# textured. Measured around the ground-truth edges of the alphamatting.com images: medians
# 0.015-0.031 for hair and clean edges alike, 0.12 against a leafy background (GT25); so this
# cue widens the band by ~1.5x almost everywhere and up to 4x on busy backgrounds rather than
# singling out hair.
TEXTURE_FULL = 0.12


@dataclass
class Matte:
    rgba: np.ndarray  # HxWx4 uint8 cut-out, colours re-estimated under the alpha
    alpha: np.ndarray  # HxW float32 in [0, 1]
    trimap: np.ndarray  # HxW uint8 {0, 128, 255}
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: trimap, alpha, foreground

    @property
    def unknown_fraction(self) -> float:
        return float(np.mean(self.trimap == UNKNOWN))


def band_px(shape: tuple[int, ...], band: float, min_band_px: int) -> int:
    """A band's half-width in pixels for an image of this shape (band: a fraction of the long side)."""
    return max(min_band_px, round(band * max(shape[:2])))


def _ridge(inside: np.ndarray, core_px: float) -> np.ndarray:
    """The medial line (ridge of the distance to the edge) of a region, where at least core_px inside."""
    d = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    return (d >= cv2.dilate(d, np.ones((3, 3), np.uint8))) & (d >= core_px) & inside


def _sobel_magnitude(x: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return cv2.magnitude(gx, gy)


def edge_band_radius(
    mask: np.ndarray, image: np.ndarray | None, min_px: float, max_px: float, texture_gain: float = 3.0
) -> np.ndarray:
    """Half-width (px, float32 HxW, meaningful on the mask's edge) of the unknown band: the
    width of the mask's own 0 -> 1 transition there (a weak gradient is an unsure edge), at
    least min_px, widened up to max_px where the image around the edge is hair-like texture."""
    m = mask.astype(np.float32) / 255.0
    transition = 1.0 / np.maximum(_sobel_magnitude(cv2.GaussianBlur(m, (3, 3), 0)), 1.0 / max_px)
    radius = np.maximum(transition, float(min_px))
    if image is not None and texture_gain > 0:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        k = 2 * max(TEXTURE_WINDOW, round(max_px)) + 1
        texture = cv2.blur(_sobel_magnitude(grey), (k, k))
        radius *= 1.0 + texture_gain * np.clip(texture / TEXTURE_FULL, 0.0, 1.0)
    return np.clip(radius, min_px, max_px)


def _edge_radius(
    mask: np.ndarray, image: np.ndarray | None, edge: np.ndarray, min_px: int, max_px: int, texture_gain: float
) -> np.ndarray:
    """edge_band_radius at the edge pixels (in their row-major order), measured at most at RADIUS_WORK_SIDE."""
    ys, xs = np.nonzero(edge)
    k = min(1.0, RADIUS_WORK_SIDE / max(mask.shape))
    if k >= 1.0:
        return edge_band_radius(mask, image, min_px, max_px, texture_gain)[ys, xs]
    h, w = mask.shape
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small_image = None if image is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    radius = edge_band_radius(small_mask, small_image, min_px * k, max_px * k, texture_gain)
    rows = np.minimum((ys * size[1]) // h, size[1] - 1)
    cols = np.minimum((xs * size[0]) // w, size[0] - 1)
    return radius[rows, cols] / k


def trimap_from_mask(
    mask: np.ndarray,
    *,
    band: float,
    min_band: float,
    min_band_px: int,
    fg_level: int,
    bg_level: int,
    image: np.ndarray | None = None,
    core_px: float = 3.0,
    texture_gain: float = 3.0,
) -> np.ndarray:
    """Trimap from an HxW uint8 (soft) mask that follows the mask's uncertainty: unknown where
    the soft mask is unsure (between bg_level and fg_level) and in a band around its edge
    whose half-width is the edge's own transition width (at least min_band of the long side,
    at most band), widened near hair-like texture of the image. Leaves, straps and gaps
    thinner than the band keep their medial line known, so the solver has something to
    propagate from instead of filling them in. The frame is no edge: an object cut by it
    stays opaque up to it."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be HxW uint8, got {mask.shape} {mask.dtype}")
    max_px = band_px(mask.shape, band, min_band_px)
    min_px = min(band_px(mask.shape, min_band, min_band_px), max_px)
    inside, outside = mask >= fg_level, mask <= bg_level
    binary = (mask >= 128).astype(np.uint8)
    edge = (binary != cv2.erode(binary, np.ones((3, 3), np.uint8))) | (binary != cv2.dilate(binary, np.ones((3, 3), np.uint8)))
    unknown = ~inside & ~outside
    if edge.any():
        # Each pixel takes the band width of its nearest edge pixel.
        dist, labels = cv2.distanceTransformWithLabels(
            (~edge).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        radius_of_label = np.zeros(labels.max() + 1, np.float32)
        radius_of_label[labels[edge]] = _edge_radius(mask, image, edge, min_px, max_px, texture_gain)
        unknown |= dist <= radius_of_label[labels]
    trimap = np.full(mask.shape, UNKNOWN, np.uint8)
    trimap[inside & ~unknown] = 255
    trimap[outside & ~unknown] = 0
    trimap[_ridge(inside, core_px)] = 255
    trimap[_ridge(outside, core_px)] = 0
    return trimap


def _bbox(region: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return (
        slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
        slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)),
    )


def _downscale(image: np.ndarray, trimap: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and trimap scaled by scale (< 1); a low-res pixel is known only where every
    full-res pixel under it is known the same way."""
    h, w = trimap.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    t = cv2.resize(trimap.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small_trimap = np.full(t.shape, UNKNOWN, np.uint8)
    small_trimap[t >= 255.0 - 1e-3] = 255
    small_trimap[t <= 1e-3] = 0
    return small, small_trimap


def guided_upsample(
    low: np.ndarray, guide_low: np.ndarray, guide: np.ndarray, radius: int = 1, eps: float = 1e-5
) -> np.ndarray:
    """Edge-aware upsampling of a low-res map by the fast guided filter (He and Sun 2015): the
    colour-guided linear model q = a . I + b is fitted at low res, its coefficients upsampled
    and applied to the full-res guide, so edges come from the full-res image. Guides are
    float32 RGB in [0, 1]. (OpenCV's guidedFilter works at one resolution only.)"""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    # float64: E[xy] - E[x]E[y] in float32 cancels to noise as large as eps on flat patches,
    # and a determinant of exactly 0 there turned the whole alpha into NaN.
    p = low.astype(np.float64)
    guide_low = guide_low.astype(np.float64)
    mean_i, mean_p = box(guide_low), box(p)
    cov = box(guide_low * p[..., None]) - mean_i * mean_p[..., None]

    def var(i: int, j: int) -> np.ndarray:
        return box(guide_low[..., i] * guide_low[..., j]) - mean_i[..., i] * mean_i[..., j] + (eps if i == j else 0.0)

    # (Sigma + eps I) a = cov for every pixel: the symmetric 3x3 systems solved by their adjugate.
    s00, s01, s02, s11, s12, s22 = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    r0, r1, r2 = cov[..., 0], cov[..., 1], cov[..., 2]
    a = np.dstack([c00 * r0 + c01 * r1 + c02 * r2, c01 * r0 + c11 * r1 + c12 * r2, c02 * r0 + c12 * r1 + c22 * r2])
    # A degenerate system (det <= 0 can only come from rounding) gets a = 0: q is the local mean.
    a = np.divide(a, det[..., None], out=np.zeros_like(a), where=det[..., None] > 0)
    b = mean_p - (a * mean_i).sum(axis=-1)
    h, w = guide.shape[:2]
    a = cv2.resize(box(a).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(box(b).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return (a * guide).sum(axis=-1) + b


def expand_trimap(image: np.ndarray, trimap: np.ndarray, radius: int, colour: float) -> np.ndarray:
    """The trimap (uint8, 128 unknown) with unknown pixels that have a known pixel of nearly
    their colour close by given that pixel's label (Shared Matting's expansion, pymatting's kernel)."""
    if radius <= 0:
        return trimap
    t = np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5)).astype(np.float32)
    expanded = t.copy()
    _expand_trimap(expanded, t, np.ascontiguousarray(image[..., :3], dtype=np.float32) / 255.0, int(radius), float(colour))
    out = trimap.copy()
    out[expanded == 1.0] = 255
    out[expanded == 0.0] = 0
    return out


def _solve_box(image: np.ndarray, trimap: np.ndarray, method: str) -> np.ndarray:
    """pymatting-style solver on an image crop (uint8) and its trimap; alpha float in [0, 1]."""
    t = np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5))
    return SOLVERS[method](image.astype(np.float64) / 255.0, t)


def estimate_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    method: str,
    solve_pixels: int,
    expand_radius: int,
    expand_colour: float,
    clamp: float,
) -> np.ndarray:
    """HxW float32 alpha in [0, 1] for an RGB uint8 image and a trimap, at the image's resolution.

    Unknown pixels next to a known one of nearly their colour join it first (expand_trimap;
    expand_radius 0: off); solved alphas within clamp of 0 or 1 are snapped to it. The solver runs on the bounding box of the unknown region, scaled down (never up) until
    the unknown region has at most solve_pixels pixels: its cost grows with that count, not
    with the image. A scaled solve is brought back by guided upsampling on the full-res image;
    known pixels keep the trimap's values exactly."""
    if method not in SOLVERS:
        raise ValueError(f"unknown matting method {method!r}; choose one of {', '.join(SOLVERS)}")
    image = image[..., :3]
    alpha = (trimap == 255).astype(np.float32)
    unknown = (trimap != 0) & (trimap != 255)
    n_unknown = int(unknown.sum())
    if not n_unknown:
        return alpha
    box = _bbox(unknown, CROP_MARGIN)
    crop = image[box]
    crop_t = expand_trimap(crop, trimap[box], expand_radius, expand_colour)
    n_unknown = int((crop_t == UNKNOWN).sum())
    has_fg, has_bg = (crop_t == 255).any(), (crop_t == 0).any()
    if not (has_fg and has_bg) or not n_unknown:
        # Nothing to propagate between: unknown pixels join the one known side (none: transparent).
        region = alpha[box]
        region[unknown[box]] = np.where(crop_t == 255, 1.0, np.where(crop_t == 0, 0.0, float(has_fg)))[unknown[box]]
        return alpha
    scale = min(1.0, (solve_pixels / n_unknown) ** 0.5)
    small, small_t = (crop, crop_t) if scale >= 1.0 else _downscale(crop, crop_t, scale)
    if not ((small_t == 255).any() and (small_t == 0).any()) or (small_t == UNKNOWN).sum() == 0:
        small, small_t, scale = crop, crop_t, 1.0  # too thin to survive the scaling: solve as is
    solved = _solve_box(small, small_t, method)
    if scale < 1.0:
        solved = guided_upsample(solved, small.astype(np.float32) / 255.0, crop.astype(np.float32) / 255.0)
    solved = np.clip(solved, 0.0, 1.0)
    if clamp > 0:
        solved[solved < clamp] = 0.0
        solved[solved > 1.0 - clamp] = 1.0
    solved[crop_t == 255] = 1.0
    solved[crop_t == 0] = 0.0
    region = alpha[box]
    region[unknown[box]] = solved[unknown[box]]
    return alpha


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, max_side: int) -> np.ndarray:
    """Foreground colours (HxWx3 uint8) under the alpha, so that the backdrop does not bleed
    into the edge (no halo, on white or coloured backdrops alike). pymatting's multi-level
    estimate gives foreground and background on the soft region's bounding box, at most
    max_side long; on a larger image the smooth background estimate is upsampled and the
    compositing equation I = aF + (1 - a)B solved for F at full resolution where alpha is
    high enough to divide by, blending into the upsampled estimate where it is faint.
    Opaque pixels keep the image's colours exactly."""
    image = image[..., :3]
    out = image.copy()
    soft = (alpha > 0.0) & (alpha < 1.0)
    if not soft.any():
        return out
    box = _bbox(soft, CROP_MARGIN)
    crop = image[box].astype(np.float32) / 255.0
    crop_alpha = alpha[box].astype(np.float32)
    ch, cw = crop_alpha.shape
    scale = min(1.0, max_side / max(ch, cw))
    if scale < 1.0:
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        fg_low, bg_low = estimate_foreground_ml(
            cv2.resize(crop, size, interpolation=cv2.INTER_AREA),
            cv2.resize(crop_alpha, size, interpolation=cv2.INTER_AREA),
            return_background=True,
        )
        fg_up = cv2.resize(fg_low.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
        bg_up = cv2.resize(bg_low.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
        a = crop_alpha[..., None]
        solved = (crop - (1.0 - a) * bg_up) / np.maximum(a, 1e-3)
        trust = np.clip((a - 0.2) / 0.4, 0.0, 1.0)  # 0 below alpha 0.2, 1 above 0.6
        fg = trust * solved + (1.0 - trust) * fg_up
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
    method: str,
    band: float,
    min_band: float,
    min_band_px: int,
    fg_level: int,
    bg_level: int,
    solve_pixels: int,
    expand_radius: int,
    expand_colour: float,
    clamp: float,
    max_side: int,
) -> Matte:
    """RGBA cut-out at the image's full resolution from an HxW uint8 (soft) object mask."""
    image = image[..., :3]
    t0 = time.perf_counter()
    trimap = trimap_from_mask(
        mask, image=image, band=band, min_band=min_band, min_band_px=min_band_px, fg_level=fg_level, bg_level=bg_level
    )
    t1 = time.perf_counter()
    alpha = estimate_alpha(
        image,
        trimap,
        method=method,
        solve_pixels=solve_pixels,
        expand_radius=expand_radius,
        expand_colour=expand_colour,
        clamp=clamp,
    )
    t2 = time.perf_counter()
    fg = estimate_foreground(image, alpha, max_side=max_side)
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    seconds = {"trimap": t1 - t0, "alpha": t2 - t1, "foreground": time.perf_counter() - t2}
    return Matte(rgba=np.dstack([fg, a8]), alpha=alpha, trimap=trimap, seconds=seconds)
