"""Try-on: a garment packshot put on a model photo, pose-aware, without a generative model.

The parts, each a plain function over numpy arrays:
- `garment_landmarks`: neckline, shoulder points and hem corners from the garment's mask;
- `garment_region`: where the model's own top is, from the pose (a torso polygon and arm
  lines), the person mask and colour (GrabCut seeded from the pose), prepared once per template;
- `body_targets` + `tps_warp`: a thin-plate spline (scipy's RBFInterpolator) taking the garment's
  landmarks onto points of the body, scaled by the shoulder width so the garment keeps its
  proportions;
- `try_on`: the warped garment clipped to the model's garment region (arms, hands and hair in
  front of the torso are outside it, so they stay on top), the model's shading carried onto
  it, the old garment inpainted where the new one does not reach, seams feathered by a pixel.
The garment's pixels are resampled, never recoloured, except by the optional shading.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from studioline.shared.errors import PermanentError
from studioline.shared.models import pose as bp

# Garment landmarks: the shoulder points are the mask's extent this far below its top (a share
# of its height), the hem corners this far above its bottom.
SHOULDER_ROW = 0.06
HEM_ROW = 0.03
# Body targets: a worn top's shoulder seams and hem sit outside the shoulder and hip joints by
# these factors of the joint distances (about the medians of the garment region's width at those
# lines over the C1 person photos, measured on the whole set).
SHOULDER_SPREAD = 1.28
HIP_SPREAD = 1.45
# The collar's top sits this share of the shoulder width above the shoulder line.
NECK_RISE = 0.12
# Region seeds: the torso polygon's core (shrunk towards its centre) is surely garment.
CORE_SHRINK = 0.55
ARM_WIDTH = 0.28  # arm line thickness, share of the shoulder width
GRABCUT_SIDE = 320  # GrabCut runs at this longer side (it is the slow part)
MIN_SHOULDER_PX = 4.0
MIN_VISIBILITY = 0.3


@dataclass
class GarmentLandmarks:
    """Image-left / image-right points (x, y) on the garment's mask."""

    neck: np.ndarray
    shoulder_left: np.ndarray
    shoulder_right: np.ndarray
    hem_left: np.ndarray
    hem_right: np.ndarray

    def array(self) -> np.ndarray:
        return np.array([self.neck, self.shoulder_left, self.shoulder_right, self.hem_left, self.hem_right], float)


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def garment_landmarks(mask: np.ndarray) -> GarmentLandmarks:
    """Landmarks of a garment laid flat or on a packshot, from its HxW mask (bool or 0..255)."""
    if mask.ndim != 2:
        raise PermanentError(f"try-on: the garment mask must be HxW, got shape {mask.shape}")
    solid = largest_component(mask > (127 if mask.dtype == np.uint8 else 0.5))
    ys, xs = np.nonzero(solid)
    if ys.size < 64:
        raise PermanentError("try-on: the garment mask is empty or too small to find the garment's shape")
    y0, y1 = int(ys.min()), int(ys.max())
    height = y1 - y0 + 1

    def extent(row: int) -> tuple[float, float]:
        cols = np.flatnonzero(solid[row])
        return float(cols.min()), float(cols.max())

    ys_row = y0 + int(round(SHOULDER_ROW * height))
    yh_row = y1 - int(round(HEM_ROW * height))
    sl, sr = extent(ys_row)
    hl, hr = extent(yh_row)
    top_cols = np.flatnonzero(solid[y0 : y0 + max(2, height // 20)].any(axis=0))
    neck_x = (sl + sr) / 2 if top_cols.size == 0 else float(top_cols.min() + top_cols.max()) / 2
    return GarmentLandmarks(
        neck=np.array([neck_x, y0], float),
        shoulder_left=np.array([sl, ys_row], float),
        shoulder_right=np.array([sr, ys_row], float),
        hem_left=np.array([hl, yh_row], float),
        hem_right=np.array([hr, yh_row], float),
    )


@dataclass
class Body:
    """What try-on needs from a model photo's pose (image-left / image-right)."""

    shoulder_left: np.ndarray
    shoulder_right: np.ndarray
    hip_left: np.ndarray
    hip_right: np.ndarray
    elbows: tuple[np.ndarray, np.ndarray]
    wrists: tuple[np.ndarray, np.ndarray]
    nose: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "Body":
        lm = np.asarray(landmarks, float)
        if lm.shape != (bp.NUM_LANDMARKS, 5):
            raise PermanentError(f"try-on: expected (33, 5) pose landmarks, got {lm.shape}")
        need = (bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER, bp.LEFT_HIP, bp.RIGHT_HIP)
        if (lm[list(need), 3] < MIN_VISIBILITY).any():
            raise PermanentError("try-on: the model photo's shoulders and hips are not all visible; it needs a frontal torso")

        def pair(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            pa, pb = lm[a, :2], lm[b, :2]
            return (pa, pb) if pa[0] <= pb[0] else (pb, pa)

        sl, sr = pair(bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER)
        hl, hr = pair(bp.LEFT_HIP, bp.RIGHT_HIP)
        if np.hypot(*(sr - sl)) < MIN_SHOULDER_PX:
            raise PermanentError("try-on: the model is seen from the side (shoulders overlap); it needs a frontal torso")
        # Arms keep their side: the elbow and wrist that belong to the image-left shoulder first.
        left_is_person_left = lm[bp.LEFT_SHOULDER, 0] <= lm[bp.RIGHT_SHOULDER, 0]
        e = (lm[bp.LEFT_ELBOW, :2], lm[bp.RIGHT_ELBOW, :2])
        w = (lm[bp.LEFT_WRIST, :2], lm[bp.RIGHT_WRIST, :2])
        if not left_is_person_left:
            e, w = e[::-1], w[::-1]
        return cls(sl, sr, hl, hr, e, w, lm[bp.NOSE, :2])

    @property
    def shoulder_width(self) -> float:
        return float(np.hypot(*(self.shoulder_right - self.shoulder_left)))

    def torso_polygon(self) -> np.ndarray:
        """Shoulders and hips spread to where a top's edges sit, as a 4-point polygon."""
        sc, hc = (self.shoulder_left + self.shoulder_right) / 2, (self.hip_left + self.hip_right) / 2
        return np.array(
            [
                sc + SHOULDER_SPREAD * (self.shoulder_left - sc),
                sc + SHOULDER_SPREAD * (self.shoulder_right - sc),
                hc + HIP_SPREAD * (self.hip_right - hc),
                hc + HIP_SPREAD * (self.hip_left - hc),
            ]
        )


def body_targets(garment: GarmentLandmarks, body: Body) -> np.ndarray:
    """Where each garment landmark goes on the photo: shoulders onto the spread shoulder line,
    the neckline above its middle, the hem corners at the garment's own length (scaled by the
    shoulder widths) beside the spread hips."""
    sl, sr, hr_, hl_ = body.torso_polygon()
    across = sr - sl
    width = float(np.hypot(*across))
    down = np.array([-across[1], across[0]]) / width  # perpendicular to the shoulder line, towards the hips
    if down[1] < 0:
        down = -down
    g_width = float(np.hypot(*(garment.shoulder_right - garment.shoulder_left)))
    if g_width < 2:
        raise PermanentError("try-on: the garment's shoulders are too close together to place it")
    scale = width / g_width
    mid = (sl + sr) / 2
    g_mid = (garment.shoulder_left + garment.shoulder_right) / 2
    neck = mid - NECK_RISE * width * down + (garment.neck[0] - g_mid[0]) * scale * across / width
    hem_drop = ((garment.hem_left[1] + garment.hem_right[1]) / 2 - g_mid[1]) * scale
    hip_mid = (hl_ + hr_) / 2
    hip_dir = (hr_ - hl_) / max(float(np.hypot(*(hr_ - hl_))), 1e-6)
    hip_half = float(np.hypot(*(hr_ - hl_))) / 2
    hem_centre = mid + hem_drop * down
    # Hem corners: the spread hip width, centred under the hips, at the garment's length.
    hem_left = hem_centre + (hip_mid - mid - np.dot(hip_mid - mid, down) * down) - hip_half * hip_dir
    hem_right = hem_centre + (hip_mid - mid - np.dot(hip_mid - mid, down) * down) + hip_half * hip_dir
    return np.array([neck, sl, sr, hem_left, hem_right])


def tps_backward_map(
    dst_points: np.ndarray, src_points: np.ndarray, size: tuple[int, int], grid: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a (W, H) output, the source coordinates a thin-plate spline through
    dst -> src gives; evaluated on a `grid`-pixel lattice and interpolated bilinearly (the
    spline is smooth, so this costs nothing visible and ~grid^2 less time)."""
    w, h = size
    spline = RBFInterpolator(np.asarray(dst_points, float), np.asarray(src_points, float), kernel="thin_plate_spline")
    gx = np.linspace(0, w - 1, max(2, -(-w // grid) + 1))
    gy = np.linspace(0, h - 1, max(2, -(-h // grid) + 1))
    lattice = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    coarse = spline(lattice).reshape(gy.size, gx.size, 2).astype(np.float32)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return fine[..., 0], fine[..., 1]


def tps_warp(rgba: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warps float premultiplied RGBA so that src_points land on dst_points, onto a (W, H) canvas."""
    map_x, map_y = tps_backward_map(dst_points, src_points, size)
    return cv2.remap(rgba, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _capsule(mask: np.ndarray, a: np.ndarray, b: np.ndarray, thickness: int, value: int) -> None:
    cv2.line(mask, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)), value, max(1, thickness))


def garment_region(photo: np.ndarray, person: np.ndarray, body: Body) -> np.ndarray:
    """HxW bool: the top the model wears, from the pose, the person mask and colour.

    GrabCut is seeded with the pose: the core of the torso polygon is garment; outside the
    person, the head above the shoulders and the legs below the spread hips are not; the rest
    of the torso polygon and the upper arms may be (sleeves); everything else of the person
    probably is not. It then splits the uncertain pixels by colour.
    """
    h, w = photo.shape[:2]
    k = min(1.0, GRABCUT_SIDE / max(h, w))
    small = cv2.resize(photo, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    pers = cv2.resize(person.astype(np.float32), (sw, sh), interpolation=cv2.INTER_LINEAR) > 0.5
    poly = body.torso_polygon() * k
    centre = poly.mean(axis=0)
    core = centre + CORE_SHRINK * (poly - centre)
    arm = max(2, int(ARM_WIDTH * body.shoulder_width * k))
    seeds = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    may = np.zeros((sh, sw), np.uint8)
    cv2.fillPoly(may, [np.round(poly).astype(np.int32)], 1)
    for shoulder, elbow in zip((body.shoulder_left, body.shoulder_right), body.elbows):
        _capsule(may, shoulder * k, elbow * k, arm, 1)
    seeds[(may > 0) & pers] = cv2.GC_PR_FGD
    seeds[~pers] = cv2.GC_BGD
    # The head: above the shoulder line by more than the collar's rise.
    rows = np.arange(sh)[:, None]
    shoulder_y = min(body.shoulder_left[1], body.shoulder_right[1]) * k
    seeds[np.broadcast_to(rows < shoulder_y - NECK_RISE * 2 * body.shoulder_width * k, (sh, sw))] = cv2.GC_BGD
    hip_y = max(body.hip_left[1], body.hip_right[1]) * k
    legs = rows > hip_y + 0.5 * body.shoulder_width * k
    seeds[np.broadcast_to(legs, (sh, sw)) & pers] = cv2.GC_BGD
    core_mask = np.zeros((sh, sw), np.uint8)
    cv2.fillPoly(core_mask, [np.round(core).astype(np.int32)], 1)
    seeds[(core_mask > 0) & pers] = cv2.GC_FGD
    if not (seeds == cv2.GC_FGD).any():
        raise PermanentError("try-on: the person mask does not cover the torso the pose found")
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(small[..., ::-1])
    if ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any():
        cv2.grabCut(bgr, seeds, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    region = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)) & pers
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    region = largest_component(region)
    full = cv2.resize(region.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    return full & (person > 0.5)


def shading_map(photo: np.ndarray, region: np.ndarray, strength: float) -> np.ndarray:
    """HxW multiplier carrying the photo's folds and light onto a new garment: the luminance of
    the old garment at mid scale over its local mean, so its own print and fine texture stay out."""
    if strength <= 0 or not region.any():
        return np.ones(region.shape, np.float32)
    side = max(region.shape)
    lum = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32) + 1.0
    weight = region.astype(np.float32)

    def masked_blur(values: np.ndarray, sigma: float) -> np.ndarray:
        num = cv2.GaussianBlur(values * weight, (0, 0), sigma)
        return num / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-3)

    folds = masked_blur(lum, 0.008 * side)
    light = masked_blur(lum, 0.08 * side)
    ratio = np.clip(folds / np.maximum(light, 1.0), 0.5, 1.5) ** strength
    return np.where(region, ratio, 1.0).astype(np.float32)


def remove_garment(photo: np.ndarray, hole: np.ndarray, work_side: int = 512) -> np.ndarray:
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


def garment_rgba(garment: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Float32 premultiplied RGBA in [0, 1] from an RGB garment photo and its alpha (HxW uint8)."""
    if garment.ndim != 3 or garment.shape[2] < 3 or garment.dtype != np.uint8:
        raise PermanentError(f"try-on: the garment must be an HxWx3 uint8 image, got {garment.shape} {garment.dtype}")
    if alpha.shape != garment.shape[:2]:
        raise PermanentError(f"try-on: garment alpha {alpha.shape} does not match the garment {garment.shape[:2]}")
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.concatenate([garment[..., :3].astype(np.float32) / 255.0 * a, a], axis=2)


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
    wears (see garment_region); landmarks: the photo's (33, 5) pose; garment: the packshot,
    alpha: its HxW uint8 alpha.
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
    src = marks.array()
    dst = body_targets(marks, body)
    warped = tps_warp(garment_rgba(garment, alpha), src, dst, (w, h))
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


def naive_paste(photo: np.ndarray, landmarks: np.ndarray, garment: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The baseline: the garment's cut-out scaled to the torso box (shoulder and hip joints' box)
    and pasted over the photo."""
    body = Body.from_landmarks(landmarks)
    pts = np.array([body.shoulder_left, body.shoulder_right, body.hip_left, body.hip_right])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    ys, xs = np.nonzero(alpha > 127)
    if ys.size == 0:
        raise PermanentError("try-on: the garment mask is empty")
    crop = garment_rgba(garment, alpha)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    scaled = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA)
    out = photo.astype(np.float32) / 255.0
    h, w = photo.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x0 + bw), min(h, y0 + bh)
    if cx1 > cx0 and cy1 > cy0:
        part = scaled[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        roi = out[cy0:cy1, cx0:cx1]
        roi[:] = roi * (1.0 - part[..., 3:]) + part[..., :3]
    return (out * 255.0 + 0.5).astype(np.uint8)


def colourway(rgb: np.ndarray, mask: np.ndarray, hue_degrees: float) -> np.ndarray:
    """The image with the hue inside `mask` (HxW float in [0, 1] or bool) rotated by hue_degrees
    in CIELAB's a*b* plane: lightness, and so the print's and the folds' contrast, is kept."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = np.deg2rad(hue_degrees)
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    rot = lab.copy()
    rot[..., 1] = np.cos(t) * a - np.sin(t) * b + 128.0
    rot[..., 2] = np.sin(t) * a + np.cos(t) * b + 128.0
    shifted = cv2.cvtColor(np.clip(rot, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    m = mask.astype(np.float32)[..., None]
    return (rgb.astype(np.float32) * (1.0 - m) + shifted * m + 0.5).astype(np.uint8)
