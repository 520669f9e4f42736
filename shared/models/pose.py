"""MediaPipe BlazePose (full), the detector and the landmark model, run by LiteRT.

MediaPipe's pose graph, re-done over numpy (pose_detection_cpu, pose_landmark_by_roi_cpu):
1. the whole image letterboxed to 224x224 in [-1, 1]; the detector's 2254 SSD anchors (5 layers,
   strides 8/16/32/32/32, fixed size) decode boxes and 4 keypoints; sigmoid scores above 0.5;
   the best box weighted-averaged with those overlapping it (IoU > 0.3), as MediaPipe's
   weighted non-maximum suppression does for one pose;
2. the ROI: centred on keypoint 0 (mid-hip), side twice its distance to keypoint 1, rotated so
   that the hip-to-keypoint-1 line points up (target angle 90 degrees), squared and enlarged 1.25x;
3. that rotated square cropped to 256x256 in [0, 1]; the landmark model gives 39 points (33 body
   + 6 auxiliary) with visibility and presence logits, a pose flag, a 64x64 heatmap and a
   256x256 segmentation of the person;
4. points refined on the heatmap (7x7 window, confidence >= 0.5), projected back through the
   ROI's rotation; the segmentation warped back to the image is the person mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studioline.shared.models.packs import pack_files
from studioline.shared.models.tflite import TfliteModel

NAME = "mediapipe_pose"
# The pack yields the detector, then the landmark model (shared/models/packs.py).
DETECTOR, LANDMARKS = pack_files(NAME)
DET_SIZE, LM_SIZE = 224, 256
# SsdAnchorsCalculator options of pose_detection_cpu.pbtxt.
_STRIDES = (8, 16, 32, 32, 32)
_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 plus the interpolated scale
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.25
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5
MIN_POSE_FLAG = 0.5

# The 33 body landmarks (BlazePose topology); "left" is the person's left.
NOSE = 0
LEFT_EAR, RIGHT_EAR = 7, 8
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
LEFT_ELBOW, RIGHT_ELBOW = 13, 14
LEFT_WRIST, RIGHT_WRIST = 15, 16
LEFT_HIP, RIGHT_HIP = 23, 24
LEFT_KNEE, RIGHT_KNEE = 25, 26
NUM_LANDMARKS = 33


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres (x, y) in [0, 1], in the detector's output order."""
    centres = []
    layer = 0
    while layer < len(_STRIDES):
        last = layer
        while last < len(_STRIDES) and _STRIDES[last] == _STRIDES[layer]:
            last += 1
        per_location = _ANCHORS_PER_LAYER * (last - layer)
        side = int(np.ceil(DET_SIZE / _STRIDES[layer]))
        ys, xs = np.mgrid[0:side, 0:side]
        grid = np.stack([(xs + 0.5) / side, (ys + 0.5) / side], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_location, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(centres).astype(np.float32)


_ANCHORS = ssd_anchors()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


@dataclass
class Pose:
    landmarks: np.ndarray  # (33, 5): x, y (image pixels), z (pixels, ROI scale), visibility, presence
    person_mask: np.ndarray  # HxW float32 in [0, 1]
    score: float  # the detector's score
    roi: tuple[float, float, float, float]  # centre x, centre y, side (pixels), rotation (radians)

    def point(self, index: int) -> np.ndarray:
        return self.landmarks[index, :2].astype(np.float64)


class BlazePose(TfliteModel):
    name = NAME

    def warmup(self) -> None:
        self.predict([np.full((256, 192, 3), 200, np.uint8)])

    def _predict(self, images: list[np.ndarray]) -> list[Pose | None]:
        """Per image, the pose of the most prominent person, or None where the detector finds nobody."""
        return [self._estimate(image) for image in images]

    def _estimate(self, image: np.ndarray) -> Pose | None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name} takes HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
        detection = self._detect(image)
        if detection is None:
            return None
        score, keypoints = detection
        roi = _roi_from_keypoints(keypoints)
        return self._landmarks(image, roi, score)

    def _detect(self, image: np.ndarray) -> tuple[float, np.ndarray] | None:
        h, w = image.shape[:2]
        s = DET_SIZE / max(h, w)
        pad_x, pad_y = (DET_SIZE - w * s) / 2, (DET_SIZE - h * s) / 2
        to_tensor = np.float32([[s, 0, pad_x], [0, s, pad_y]])
        boxed = cv2.warpAffine(image, to_tensor, (DET_SIZE, DET_SIZE), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        outputs = self.invoke(DETECTOR, boxed[None].astype(np.float32) / 127.5 - 1.0)
        raw = next(v for v in outputs.values() if v.shape[-1] == 12)[0]
        scores = _sigmoid(next(v for v in outputs.values() if v.shape[-1] == 1)[0, :, 0])
        keep = np.flatnonzero(scores >= MIN_DETECTION_SCORE)
        if keep.size == 0:
            return None
        # Box centre and keypoints are offsets from the anchor centre in tensor pixels; size is absolute.
        centres = raw[keep, 0:2] / DET_SIZE + _ANCHORS[keep]
        sizes = raw[keep, 2:4] / DET_SIZE
        keypoints = raw[keep, 4:12].reshape(-1, 4, 2) / DET_SIZE + _ANCHORS[keep][:, None, :]
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        best = int(np.argmax(scores[keep]))
        overlap = _iou(boxes[best], boxes) > NMS_IOU
        weights = scores[keep][overlap]
        merged = (keypoints[overlap] * weights[:, None, None]).sum(0) / weights.sum()
        # Tensor coordinates -> image pixels (the letterbox removed).
        pixels = (merged * DET_SIZE - [pad_x, pad_y]) / s
        return float(scores[keep][best]), pixels

    def _landmarks(self, image: np.ndarray, roi: tuple[float, float, float, float], score: float) -> Pose | None:
        h, w = image.shape[:2]
        cx, cy, side, rotation = roi
        c, s = np.cos(rotation), np.sin(rotation)
        unit = side / LM_SIZE
        # Crop pixel (u, v) -> image point: centre + R(rotation) * ((u, v) - LM_SIZE / 2) * unit.
        crop_to_image = np.float32(
            [[c * unit, -s * unit, cx - (c - s) * side / 2], [s * unit, c * unit, cy - (s + c) * side / 2]]
        )
        crop = cv2.warpAffine(
            image, crop_to_image, (LM_SIZE, LM_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )  # fmt: skip
        outputs = self.invoke(LANDMARKS, crop[None].astype(np.float32) / 255.0)
        by_shape = {v.shape[1:]: v[0] for v in outputs.values()}
        flag = float(_sigmoid(by_shape[(1,)])[0])
        if flag < MIN_POSE_FLAG:
            return None
        points = by_shape[(195,)].reshape(39, 5)[:NUM_LANDMARKS].astype(np.float64)
        xy = _refine_on_heatmap(points[:, :2] / LM_SIZE, by_shape[(64, 64, 39)][..., :NUM_LANDMARKS])
        uv = xy * LM_SIZE
        image_xy = uv @ crop_to_image[:, :2].T.astype(np.float64) + crop_to_image[:, 2]
        landmarks = np.column_stack(
            [image_xy, points[:, 2] * unit, _sigmoid(points[:, 3]), _sigmoid(points[:, 4])]
        ).astype(np.float32)
        seg = _sigmoid(by_shape[(256, 256, 1)][..., 0]).astype(np.float32)
        person = cv2.warpAffine(seg, crop_to_image, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        return Pose(landmarks=landmarks, person_mask=person, score=score, roi=roi)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def _roi_from_keypoints(keypoints: np.ndarray) -> tuple[float, float, float, float]:
    """AlignmentPointsRectsCalculator (keypoints 0 -> 1, target 90 degrees) then
    RectTransformationCalculator (square on the long side, x1.25), in pixels."""
    (x0, y0), (x1, y1) = keypoints[0], keypoints[1]
    side = 2.0 * float(np.hypot(x1 - x0, y1 - y0)) * ROI_SCALE
    rotation = np.pi / 2 - np.arctan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    return float(x0), float(y0), side, float(rotation)


def _refine_on_heatmap(xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RefineLandmarksFromHeatmapCalculator: each point moves to the confidence-weighted mean
    of the heatmap cells in a 7x7 window around it, when the window's peak is confident."""
    hm_h, hm_w, _ = heatmap.shape
    conf = _sigmoid(heatmap)
    out = xy.copy()
    half = (HEATMAP_KERNEL - 1) // 2
    for i, (x, y) in enumerate(xy):
        col, row = int(x * hm_w), int(y * hm_h)
        if not (0 <= col < hm_w and 0 <= row < hm_h):
            continue
        r0, r1 = max(0, row - half), min(hm_h, row + half + 1)
        c0, c1 = max(0, col - half), min(hm_w, col + half + 1)
        window = conf[r0:r1, c0:c1, i]
        total = float(window.sum())
        if window.max() >= HEATMAP_MIN_CONFIDENCE and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i] = (float((cols * window).sum()) / hm_w / total, float((rows * window).sum()) / hm_h / total)
    return out
