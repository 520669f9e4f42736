"""Template preparation, run once per model photo (by `studioline templates add`, never per job):
the pose model's landmarks and person mask, the body they show (back and side views refused
there), and the region of the top the model wears, found by GrabCut seeded from the pose (a torso
polygon and arm lines) within the person mask. The pose model is called in one place only.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.services.catalog_generator.body import NECK_RISE, Body
from studioline.services.catalog_generator.garment import largest_component
from studioline.services.catalog_generator.templates import Template
from studioline.shared.errors import PermanentError

# Region seeds: the torso polygon's core (shrunk towards its centre) is surely garment.
CORE_SHRINK = 0.55
ARM_WIDTH = 0.28  # arm line thickness, share of the shoulder width
GRABCUT_SIDE = 320  # GrabCut runs at this longer side (it is the slow part)


def estimate_pose(pose_model, photo: np.ndarray):
    """The pose model's only call site here, so a change of its interface is a one-line edit."""
    return pose_model.predict([photo])[0]


def prepare_template(photo: np.ndarray, pose_model) -> Template:
    """Runs the pose model on a model photo and derives its person mask and garment region."""
    pose = estimate_pose(pose_model, photo)
    if pose is None:
        raise PermanentError("template: no person found in the model photo")
    body = Body.from_landmarks(pose.landmarks)
    region = garment_region(photo, pose.person_mask, body)
    return Template(photo, pose.person_mask, region, pose.landmarks, pose.score)


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
