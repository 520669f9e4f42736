"""Try-on: a garment packshot put on a model photo, pose-aware, without a generative model.

The parts, each a plain function over numpy arrays:
- `garment_landmarks`: the garment's category (top / dress / bottom), neckline, shoulder points
  and hem corners, and per sleeve its armpit, shoulder tip and cuff, from its mask's contour (the
  armpits are the contour's deepest concavities beside the torso; the hem is the torso's, sleeves
  left out; with a collar narrower than the shoulders the sleeves' tips are the shoulders);
- `garment_region`: where the model's own top is, from the pose (a torso polygon and arm
  lines), the person mask and colour (GrabCut seeded from the pose), prepared once per template;
- `Body.from_landmarks`: the pose's joints, refusing back views and side views with a clear error;
- `body_targets` + `tps_warp`: a thin-plate spline (scipy's RBFInterpolator) taking the garment's
  landmarks onto points of the body, scaled by the shoulder width so the garment keeps its
  proportions;
- `try_on`: the warped garment clipped to the model's garment region (arms, hands and hair in
  front of the torso are outside it, so they stay on top), the model's shading carried onto
  it, the old garment inpainted where the new one does not reach, seams feathered by a pixel.
  Sleeves are not placed along the arms: they show only where they fall inside the old
  garment's region (placing them rigidly along the arms, and bending the spline to the wrists,
  both scored lower on the C1 pairs).
The garment's pixels are resampled, never recoloured, except by the optional shading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from studioline.shared.errors import PermanentError
from studioline.shared.models import pose as bp

# Garment landmarks: without sleeves the shoulder points are the mask's extent this far below its
# top (a share of its height); the hem corners are the torso's extent this far above its bottom.
SHOULDER_ROW = 0.06
HEM_ROW = 0.03
# An armpit is a concavity of the contour at least this deep (share of the garment's width), in
# the upper part of the garment (shares of its height), beside the torso.
ARMPIT_DEPTH = 0.03
ARMPIT_ROWS = (0.08, 0.7)
MIN_SLEEVE_AREA = 0.01  # share of the garment's area
# Sleeve length (root to cuff) over the garment's shoulder width: longer is a long sleeve.
LONG_SLEEVE = 0.9
# Length over the torso's median width (sleeves left out): longer is a dress (tops are about
# 1.2-2.3 on the C2 packshots, dresses 2.9-3.6).
DRESS_LENGTH = 2.7
# A bottom's top rows are a waistband filled across at least this share of its width (a top's
# are a collar, straps or shoulders with the neckline between).
WAISTBAND_WIDTH = 0.5
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
WORK_SIDE = 512  # masks, shading and inpainting are computed at this longer side at most


@dataclass
class Sleeve:
    """One sleeve of a garment laid flat: its pixels, where it joins the torso (the shoulder tip
    on top, the armpit below) and its cuff's outer and inner corners (outer: away from the
    garment's centre line)."""

    mask: np.ndarray
    tip: np.ndarray
    armpit: np.ndarray
    cuff_outer: np.ndarray
    cuff_inner: np.ndarray

    @property
    def root(self) -> np.ndarray:
        return (self.tip + self.armpit) / 2

    @property
    def length(self) -> float:
        return float(np.hypot(*((self.cuff_outer + self.cuff_inner) / 2 - self.root)))


@dataclass
class GarmentLandmarks:
    """Image-left / image-right points (x, y) on the garment's mask, its category and sleeves."""

    neck: np.ndarray
    shoulder_left: np.ndarray
    shoulder_right: np.ndarray
    hem_left: np.ndarray
    hem_right: np.ndarray
    category: str = "top"  # "top", "dress" or "bottom" (trousers, skirts)
    sleeves: tuple[Sleeve | None, Sleeve | None] = (None, None)
    solid: np.ndarray | None = field(default=None, repr=False)  # the filled mask

    def array(self) -> np.ndarray:
        return np.array([self.neck, self.shoulder_left, self.shoulder_right, self.hem_left, self.hem_right], float)

    @property
    def shoulder_width(self) -> float:
        return float(np.hypot(*(self.shoulder_right - self.shoulder_left)))

    @property
    def sleeve_length(self) -> str:
        """The sleeves: "none", "short" or "long" (the longer one found, over the shoulder width)."""
        found = [s.length for s in self.sleeves if s is not None]
        if not found:
            return "none"
        return "long" if max(found) > LONG_SLEEVE * self.shoulder_width else "short"

    def torso_mask(self) -> np.ndarray:
        torso = self.solid.copy()
        for sleeve in self.sleeves:
            if sleeve is not None:
                torso &= ~sleeve.mask
        return largest_component(torso)  # bits of a cuff cut off from the sleeve are not torso


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest blob's outer contour (N x 2) and the blob filled (holes of a print or of a
    thresholded white garment closed)."""
    binary = (mask > (127 if mask.dtype == np.uint8 else 0.5)).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise PermanentError("try-on: the garment mask is empty or too small to find the garment's shape")
    contour = max(contours, key=cv2.contourArea)
    solid = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(solid, [contour], -1, 1, -1)
    return contour, solid > 0


def _concavities(contour: np.ndarray) -> np.ndarray:
    """Rows (x, y, depth) of the contour's convexity defects' deepest points."""
    try:
        hull = cv2.convexHull(contour, returnPoints=False)
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:  # a self-touching contour makes the hull non-monotonic
        return np.zeros((0, 3))
    if defects is None:
        return np.zeros((0, 3))
    d = defects.reshape(-1, 4)
    far = contour[d[:, 2], 0]
    return np.column_stack([far, d[:, 3] / 256.0]).astype(float)


def _sleeve(solid: np.ndarray, armpit: np.ndarray, outward: int, area: int) -> Sleeve | None:
    """The sleeve beyond an armpit: the garment's pixels outward of the armpit's column that
    reach above it (what lies only below it is the torso's flank), with its shoulder tip (the
    top of the armpit's column) and cuff (the far end along root -> farthest pixel)."""
    h, w = solid.shape
    ax, ay = int(armpit[0]), int(armpit[1])
    side = np.zeros_like(solid)
    if outward < 0:
        side[:, :ax] = solid[:, :ax]
    else:
        side[:, ax + 1 :] = solid[:, ax + 1 :]
    n, labels = cv2.connectedComponents(side.astype(np.uint8), connectivity=8)
    above = np.unique(labels[: max(ay, 0)][side[: max(ay, 0)]])
    sleeve = np.isin(labels, above[above > 0])
    if sleeve.sum() < MIN_SLEEVE_AREA * area:
        return None
    column = np.flatnonzero(solid[:, min(max(ax, 0), w - 1)])
    tip = np.array([ax, column.min() if column.size else ay], float)
    armpit = np.asarray(armpit, float)
    root = (tip + armpit) / 2
    ys, xs = np.nonzero(sleeve)
    pts = np.column_stack([xs, ys]).astype(float)
    far = pts[np.argmax(((pts - root) ** 2).sum(axis=1))]
    length = float(np.hypot(*(far - root)))
    if length < 2:
        return None
    axis = (far - root) / length
    normal = np.array([-axis[1], axis[0]])
    if np.dot(normal, [outward, -1.0]) < 0:  # outer: away from the centre line, or up
        normal = -normal
    along, across = (pts - root) @ axis, (pts - root) @ normal
    cuff = along >= along.max() - max(2.0, 0.06 * length)
    outer, inner = pts[cuff][np.argmax(across[cuff])], pts[cuff][np.argmin(across[cuff])]
    return Sleeve(sleeve, tip, armpit, outer, inner)


def _mirrored(sleeve: Sleeve, solid: np.ndarray, centre_x: float) -> Sleeve | None:
    """The other sleeve of a symmetric garment whose sleeve lies against its torso (no armpit
    gap to find): the found one mirrored about the centre line, where the garment has pixels."""
    w = solid.shape[1]
    flip = lambda p: np.array([2 * centre_x - p[0], p[1]])  # noqa: E731
    cols = np.round(2 * centre_x - np.arange(w)).astype(int)
    inside = (cols >= 0) & (cols < w)
    mirrored = np.zeros_like(solid)
    mirrored[:, inside] = sleeve.mask[:, cols[inside]]
    mirrored &= solid
    if mirrored.sum() < 0.5 * sleeve.mask.sum():
        return None
    return Sleeve(mirrored, flip(sleeve.tip), flip(sleeve.armpit), flip(sleeve.cuff_outer), flip(sleeve.cuff_inner))


def garment_landmarks(mask: np.ndarray) -> GarmentLandmarks:
    """Landmarks, sleeves and category of a garment laid flat or on a packshot, from its HxW
    mask (bool or 0..255)."""
    if mask.ndim != 2:
        raise PermanentError(f"try-on: the garment mask must be HxW, got shape {mask.shape}")
    contour, solid = _outline(mask)
    area = int(solid.sum())
    if area < 64:
        raise PermanentError("try-on: the garment mask is empty or too small to find the garment's shape")
    _, y0, width, height = cv2.boundingRect(contour)
    top_cols = np.flatnonzero(solid[y0 : y0 + max(2, height // 20)].any(axis=0))
    centre_x = float(top_cols.min() + top_cols.max()) / 2
    dents = _concavities(contour)
    armpits: list[np.ndarray | None] = []
    for outward in (-1, 1):
        ok = (
            (outward * (dents[:, 0] - centre_x) > 0.1 * width)
            & (dents[:, 1] > y0 + ARMPIT_ROWS[0] * height)
            & (dents[:, 1] < y0 + ARMPIT_ROWS[1] * height)
            & (dents[:, 2] >= ARMPIT_DEPTH * width)
        )
        armpits.append(dents[ok][np.argmax(dents[ok, 2]), :2] if ok.any() else None)
    crotch = (
        (np.abs(dents[:, 0] - centre_x) < 0.15 * width) & (dents[:, 1] > y0 + 0.2 * height) & (dents[:, 2] > 0.3 * height)
    )
    sleeves = [None if a is None else _sleeve(solid, a, outward, area) for a, outward in zip(armpits, (-1, 1))]
    for i in (0, 1):
        if sleeves[i] is None and sleeves[1 - i] is not None:
            sleeves[i] = _mirrored(sleeves[1 - i], solid, centre_x)

    def extent(m: np.ndarray, row: int) -> tuple[float, float, int]:
        """The leftmost and rightmost pixel of the nearest non-empty row at or above `row`."""
        filled = np.flatnonzero(m[: row + 1].any(axis=1))
        row = int(filled.max())
        cols = np.flatnonzero(m[row])
        return float(cols.min()), float(cols.max()), row

    ys_row = y0 + int(round(SHOULDER_ROW * height))
    sl, sr, ys_row = extent(solid, ys_row)
    shoulders = np.array([[sl, ys_row], [sr, ys_row]], float)
    if sleeves[0] is not None and sleeves[1] is not None and sleeves[1].tip[0] - sleeves[0].tip[0] > sr - sl:
        # A high collar is narrower than the shoulders: the sleeves' tips are the shoulders then.
        shoulders = np.array([sleeves[0].tip, sleeves[1].tip])
    marks = GarmentLandmarks(np.array([centre_x, y0], float), shoulders[0], shoulders[1], None, None,
                             sleeves=tuple(sleeves), solid=solid)  # fmt: skip
    torso = marks.torso_mask()
    rows = np.flatnonzero(torso.any(axis=1))
    yh_row = int(rows.max()) - int(round(HEM_ROW * (rows.max() - rows.min() + 1)))
    hl, hr, yh_row = extent(torso, yh_row)
    marks.hem_left, marks.hem_right = np.array([hl, yh_row], float), np.array([hr, yh_row], float)
    if marks.shoulder_width < 2:
        raise PermanentError("try-on: the garment's shoulders are too close together to place it")
    # A waistband: the top rows are filled across (a top has a neckline or straps there).
    top_band = solid[y0 : y0 + max(2, height // 30), top_cols.min() : top_cols.max() + 1]
    waistband = top_band.mean() > 0.8 and top_band.shape[1] > WAISTBAND_WIDTH * width
    torso_width = float(np.median(torso.sum(axis=1)[rows]))
    if waistband and (crotch.any() or sleeves == [None, None]):
        marks.category = "bottom"
    elif height / max(torso_width, 1.0) > DRESS_LENGTH:
        marks.category = "dress"
    return marks


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
        # Seen from the front, the person's left shoulder is on the image's right and the nose in
        # front of the shoulders; from the back both flip (MediaPipe keeps the person's sides).
        mirrored = lm[bp.LEFT_SHOULDER, 0] < lm[bp.RIGHT_SHOULDER, 0]
        nose_behind = lm[bp.NOSE, 2] > lm[[bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER], 2].mean()
        if mirrored and nose_behind:
            raise PermanentError(
                "try-on: the model photo shows the person's back (shoulders mirrored, face turned away); "
                "a garment's front cannot be put on it"
            )

        def pair(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            pa, pb = lm[a, :2], lm[b, :2]
            return (pa, pb) if pa[0] <= pb[0] else (pb, pa)

        sl, sr = pair(bp.LEFT_SHOULDER, bp.RIGHT_SHOULDER)
        hl, hr = pair(bp.LEFT_HIP, bp.RIGHT_HIP)
        if np.hypot(*(sr - sl)) < MIN_SHOULDER_PX:
            raise PermanentError("try-on: the model is seen from the side (shoulders overlap); it needs a frontal torso")
        # Arms keep their side: the elbow and wrist that belong to the image-left shoulder first.
        e = (lm[bp.LEFT_ELBOW, :2], lm[bp.RIGHT_ELBOW, :2])
        w = (lm[bp.LEFT_WRIST, :2], lm[bp.RIGHT_WRIST, :2])
        if lm[bp.LEFT_SHOULDER, 0] > lm[bp.RIGHT_SHOULDER, 0]:
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
    scale = width / garment.shoulder_width
    mid = (sl + sr) / 2
    g_mid = (garment.shoulder_left + garment.shoulder_right) / 2
    neck = mid - NECK_RISE * width * down + (garment.neck[0] - g_mid[0]) * scale * across / width
    hem_drop = ((garment.hem_left[1] + garment.hem_right[1]) / 2 - g_mid[1]) * scale
    hip_mid = (hl_ + hr_) / 2
    hip_dir = (hr_ - hl_) / max(float(np.hypot(*(hr_ - hl_))), 1e-6)
    hip_half = float(np.hypot(*(hr_ - hl_))) / 2
    # Hem corners: the spread hip width, centred under the hips, at the garment's length.
    hem_centre = mid + hem_drop * down + (hip_mid - mid - np.dot(hip_mid - mid, down) * down)
    return np.array([neck, sl, sr, hem_centre - hip_half * hip_dir, hem_centre + hip_half * hip_dir])


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
        # GrabCut seeds its colour models from OpenCV's per-thread RNG: fix it, or the result
        # depends on what ran before on this thread.
        cv2.setRNGSeed(0)
        cv2.grabCut(bgr, seeds, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    region = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)) & pers
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    region = largest_component(region)
    full = cv2.resize(region.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    return full & (person > 0.5)


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
