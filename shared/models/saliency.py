"""Saliency heatmaps for smart cropping: the img-focus ViT-S model (img-focus==0.1.1, MIT).

Pre- and post-processing follow the package's own `img_focus/detector.py`: the longer side is
resized to 224 (INTER_AREA), the image is centred on a 224x224 canvas padded with black, and
normalised with the ImageNet mean and std; the model's sigmoid output is cropped back to the
unpadded region and resized to the input's size.
"""

from __future__ import annotations

import cv2
import numpy as np

from studioline.shared.models.base import OnnxModel

INPUT_SIZE = 224
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _letterbox(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Returns the normalised 3x224x224 input and the content region (top, left, h, w) in it."""
    h, w = image.shape[:2]
    scale = INPUT_SIZE / max(h, w)
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    top, left = (INPUT_SIZE - rh) // 2, (INPUT_SIZE - rw) // 2
    canvas[top : top + rh, left : left + rw] = resized
    x = (canvas.astype(np.float32) / 255.0 - _MEAN) / _STD
    return x.transpose(2, 0, 1), (top, left, rh, rw)


class VitSFocus(OnnxModel):
    """img-focus ViT-S saliency: HxWx3 RGB uint8 -> HxW float32 map in [0, 1].

    Values are the model's sigmoid outputs, not rescaled per image: plain backgrounds sit near
    0.5 and salient regions approach 1, so callers that need a mass (e.g. a crop objective)
    should subtract the map's floor themselves.
    """

    name = "vit_s_focus"

    def _predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        batch, regions = zip(*(_letterbox(im[..., :3]) for im in images))
        scores = self.session.run(None, {self.input_name: np.stack(batch)})[0]
        maps = []
        for image, score, (top, left, rh, rw) in zip(images, scores, regions):
            heat = score[0]
            if heat.shape != (INPUT_SIZE, INPUT_SIZE):
                heat = cv2.resize(heat, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
            heat = heat[top : top + rh, left : left + rw]
            heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            maps.append(np.clip(heat, 0.0, 1.0).astype(np.float32, copy=False))
        return maps


def spectral_residual_saliency(image: np.ndarray) -> np.ndarray:
    """Classical fallback (Hou & Zhang 2007, OpenCV contrib): HxW float32 in [0, 1]. Blotchy;
    use only where the model file is unavailable by choice."""
    gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    ok, sal = cv2.saliency.StaticSaliencySpectralResidual_create().computeSaliency(gray)
    if not ok:
        raise RuntimeError("spectral residual saliency failed")
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), max(gray.shape) / 100)
    peak = float(sal.max())
    return sal / peak if peak > 0 else sal
