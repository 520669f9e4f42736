"""U2Net and U2Netp salient-object models (rembg's background-removal weights), via onnxruntime.

Pre- and post-processing follow rembg so the masks match what people know from it: resize to
320x320, divide by the image's own maximum pixel value (not 255), ImageNet mean/std, take the
first side output (d1), min-max normalise it, resize back to the input size.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from studioline.shared.models.base import OnnxModel, register_model
from studioline.shared.models.device import u2net_predict

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


class U2NetBase(OnnxModel):
    size: ClassVar[int] = 320
    # The rembg exports fix the batch at 1.
    make_batch_dynamic = True

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name} takes HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
        small = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32)
        small /= max(float(small.max()), 1.0)
        return ((small - _MEAN) / _STD).transpose(2, 0, 1)

    @staticmethod
    def postprocess(d1: np.ndarray, height: int, width: int) -> np.ndarray:
        lo, hi = float(d1.min()), float(d1.max())
        pred = (d1 - lo) / (hi - lo) if hi > lo else np.zeros_like(d1)
        alpha = cv2.resize(pred.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(alpha, 0.0, 1.0)

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 images -> float32 HxW foreground probability in [0, 1], one per image."""
        if not self.loaded:
            self.load()
        if self.torch_device is not None:  # on the GPU: tensors stay there (shared/models/device.py)
            return u2net_predict(self, images, self.torch_device)
        batch = [self.preprocess(im) for im in images]
        if self.stack_batches and len(batch) > 1:
            d1s = list(self.session.run(None, {self.input_name: np.stack(batch)})[0][:, 0])
        else:
            d1s = [self.session.run(None, {self.input_name: x[None]})[0][0, 0] for x in batch]
        return [self.postprocess(d1, *im.shape[:2]) for d1, im in zip(d1s, images)]


@register_model
class U2Netp(U2NetBase):
    name = "u2netp"
    files = ("u2netp.onnx",)


@register_model
class U2Net(U2NetBase):
    name = "u2net"
    files = ("u2net.onnx",)
