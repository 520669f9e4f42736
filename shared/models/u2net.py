"""U2Net and U2Netp salient-object models (rembg's background-removal weights), via onnxruntime.

Pre- and post-processing follow rembg so the masks match what people know from it: resize to
320x320, divide by the image's own maximum pixel value (not 255), ImageNet mean/std, take the
first side output (d1), min-max normalise it, resize back to the input size.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from studioline.shared.models.base import OnnxModel
from studioline.shared.models.device import u2net_predict

# The transform's one definition, used by the NumPy/OpenCV path below and by the torch path in
# shared/models/device.py (only the resizes differ: OpenCV's area filter here, torch's
# antialiased bilinear there). Mean and std are channel-first: they broadcast over CHW and NCHW.
SIZE = 320
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def normalise(x, peak, mean=MEAN, std=STD):
    """Resized float pixels (channel-first, NumPy or torch) divided by the image's own maximum
    `peak` (at least 1), then ImageNet mean/std (given as tensors on x's device for torch)."""
    return (x / peak - mean) / std


def stretch(d1, lo, hi):
    """The first side output min-max stretched to [0, 1], given its minimum and maximum; a flat
    output (hi == lo, so d1 - lo is 0) gives zeros."""
    return (d1 - lo) / (hi - lo + (hi <= lo))


class U2NetBase(OnnxModel):
    size: ClassVar[int] = SIZE
    # The rembg exports fix the batch at 1.
    make_batch_dynamic = True

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name} takes HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
        small = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32)
        return normalise(small.transpose(2, 0, 1), max(float(small.max()), 1.0))

    @staticmethod
    def postprocess(d1: np.ndarray, height: int, width: int) -> np.ndarray:
        pred = stretch(d1, float(d1.min()), float(d1.max()))
        alpha = cv2.resize(pred.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(alpha, 0.0, 1.0)

    def _predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 images -> float32 HxW foreground probability in [0, 1], one per image."""
        if self.torch_device is not None:  # on the GPU: tensors stay there (shared/models/device.py)
            return u2net_predict(self, images, self.torch_device)
        batch = [self.preprocess(im) for im in images]
        if self.stack_batches and len(batch) > 1:
            d1s = list(self.session.run(None, {self.input_name: np.stack(batch)})[0][:, 0])
        else:
            d1s = [self.session.run(None, {self.input_name: x[None]})[0][0, 0] for x in batch]
        return [self.postprocess(d1, *im.shape[:2]) for d1, im in zip(d1s, images)]


class U2Netp(U2NetBase):
    name = "u2netp"


class U2Net(U2NetBase):
    name = "u2net"
