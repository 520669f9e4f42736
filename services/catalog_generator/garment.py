"""Garment analysis: a garment's category (top / dress / bottom), neckline, shoulder points and
hem corners, and per sleeve its armpit, shoulder tip and cuff, all from its mask's contour (the
armpits are the contour's deepest concavities beside the torso; the hem is the torso's, sleeves
left out; with a collar narrower than the shoulders the sleeves' tips are the shoulders), plus
the garment's pixels as premultiplied RGBA for warping. Plain functions over numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from studioline.shared.errors import PermanentError

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


def garment_rgba(garment: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Float32 premultiplied RGBA in [0, 1] from an RGB garment photo and its alpha (HxW uint8)."""
    if garment.ndim != 3 or garment.shape[2] < 3 or garment.dtype != np.uint8:
        raise PermanentError(f"try-on: the garment must be an HxWx3 uint8 image, got {garment.shape} {garment.dtype}")
    if alpha.shape != garment.shape[:2]:
        raise PermanentError(f"try-on: garment alpha {alpha.shape} does not match the garment {garment.shape[:2]}")
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.concatenate([garment[..., :3].astype(np.float32) / 255.0 * a, a], axis=2)
