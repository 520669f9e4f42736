"""Try-on: a garment packshot put on a prepared model template, pose-aware, without a generative
model. The garment's landmarks (garment.py) are warped onto points of the body (body.py) by a
thin-plate spline (warp.py); the warped garment is clipped to the model's garment region (arms,
hands and hair in front of the torso are outside it, so they stay on top), the model's shading
is carried onto it, the old garment is inpainted where the new one does not reach, and seams are
feathered by a pixel. Sleeves are not placed along the arms: they show only where they fall
inside the old garment's region (placing them rigidly along the arms, and bending the spline to
the wrists, both scored lower on the C1 pairs). The garment's pixels are resampled, never
recoloured, except by the optional shading.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.services.catalog_generator.body import Body, body_targets
from studioline.services.catalog_generator.garment import garment_landmarks, garment_rgba
from studioline.services.catalog_generator.warp import tps_warp
from studioline.shared.errors import PermanentError

WORK_SIDE = 512  # masks, shading and inpainting are computed at this longer side at most


def shading_map(photo: np.ndarray, region: np.ndarray, strength: float) -> np.ndarray:
    """HxW multiplier carrying the photo's folds and light onto a new garment: the luminance of
    the old garment at mid scale over its local mean, so its own print and fine texture stay out.
    Both scales are smooth, so they are computed at WORK_SIDE at most and enlarged."""
    if strength <= 0 or not region.any():
        return np.ones(region.shape, np.float32)
    h, w = region.shape
    k = min(1.0, WORK_SIDE / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    side = max(size)
    lum = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32) + 1.0
    weight = cv2.resize(region.astype(np.float32), size, interpolation=cv2.INTER_AREA)

    def masked_blur(values: np.ndarray, sigma: float) -> np.ndarray:
        num = cv2.GaussianBlur(values * weight, (0, 0), sigma)
        return num / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-3)

    folds = masked_blur(lum, 0.008 * side)
    light = masked_blur(lum, 0.08 * side)
    ratio = np.clip(folds / np.maximum(light, 1.0), 0.5, 1.5) ** strength
    ratio = cv2.resize(ratio, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(region, ratio, 1.0).astype(np.float32)


def remove_garment(photo: np.ndarray, hole: np.ndarray, work_side: int = WORK_SIDE) -> np.ndarray:
    """The photo with `hole` filled from its surroundings (OpenCV Telea), at a reduced size
    for speed; only the hole's pixels change."""
    if not hole.any():
        return photo.copy()
    h, w = hole.shape
    k = min(1.0, work_side / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    small_hole = (cv2.resize(hole.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) > 0).astype(np.uint8)
    filled = cv2.inpaint(small, cv2.dilate(small_hole, np.ones((3, 3), np.uint8)), 5, cv2.INPAINT_TELEA)
    big = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    out = photo.copy()
    out[hole] = big[hole]
    return out


def try_on(
    photo: np.ndarray,
    person: np.ndarray,
    region: np.ndarray,
    landmarks: np.ndarray,
    garment: np.ndarray,
    alpha: np.ndarray,
    shading: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The model photo wearing the garment, and the garment's coverage (HxW float32) on it.

    photo: HxWx3 uint8 RGB; person: HxW float person mask; region: HxW bool, the top the model
    wears (see prepare.garment_region); landmarks: the photo's (33, 5) pose; garment: the packshot,
    alpha: its HxW uint8 alpha. Trousers and skirts are refused (only tops and dresses are placed).
    """
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise PermanentError(f"try-on: the model photo must be HxWx3 uint8, got {photo.shape} {photo.dtype}")
    if region.shape != photo.shape[:2] or person.shape != photo.shape[:2]:
        raise PermanentError("try-on: the template's masks do not match its photo's size")
    if not region.any():
        raise PermanentError("try-on: the template has an empty garment region")
    h, w = photo.shape[:2]
    body = Body.from_landmarks(landmarks)
    marks = garment_landmarks(alpha)
    if marks.category == "bottom":
        raise PermanentError(
            "try-on: the garment looks like trousers or a skirt (a waistband on top and no sleeves, or two legs); "
            "only tops and dresses can be put on a model photo yet"
        )
    warped = tps_warp(garment_rgba(garment, alpha), marks.array(), body_targets(marks, body), (w, h))
    # Feather the region's edge by about a pixel at 256 px so seams blend, not step.
    sigma = max(0.6, 0.0025 * max(h, w))
    clip = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma)
    cover = np.clip(warped[..., 3], 0.0, 1.0)
    a = cover * clip
    colour = warped[..., :3] / np.maximum(cover[..., None], 1e-4)  # un-premultiply
    colour *= shading_map(photo, region, shading)[..., None]
    base = remove_garment(photo, region & (cover < 0.5))
    out = base.astype(np.float32) / 255.0 * (1.0 - a[..., None]) + np.clip(colour, 0, 1) * a[..., None]
    return (out * 255.0 + 0.5).astype(np.uint8), a
