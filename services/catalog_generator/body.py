"""The body a model photo shows, from its (33, 5) pose landmarks: shoulders, hips, elbows, wrists
and nose image-left / image-right, refusing back views and side views with a clear error; the
torso polygon (shoulders and hips spread to where a top's edges sit); and `body_targets`, the
points of the body a garment's landmarks are warped onto, scaled by the shoulder width so the
garment keeps its proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studioline.services.catalog_generator.garment import GarmentLandmarks
from studioline.shared.errors import PermanentError
from studioline.shared.models import pose as bp

# Body targets: a worn top's shoulder seams and hem sit outside the shoulder and hip joints by
# these factors of the joint distances (about the medians of the garment region's width at those
# lines over the C1 person photos, measured on the whole set).
SHOULDER_SPREAD = 1.28
HIP_SPREAD = 1.45
# The collar's top sits this share of the shoulder width above the shoulder line.
NECK_RISE = 0.12
MIN_SHOULDER_PX = 4.0
MIN_VISIBILITY = 0.3


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
