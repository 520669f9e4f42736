"""MobileNetV2 (ImageNet) as a feature extractor: pooled 1280-d features and the 1000 logits.

The architecture is torchvision's, rebuilt in plain torch so torchvision's official weights
(the mobilenet_v2 pack's .pth) load by their own keys; PyPI's torchvision does not
import beside the CPU torch used here. Torch is needed only to export the ONNX file once;
serving runs that file with onnxruntime and never imports torch.

Preprocessing: the whole frame is resized directly to 224x224 (no centre crop, no letterbox).
Telling a packshot from a studio or street photo depends on the background up to the edges,
which torchvision's centre crop would cut away, and a letterbox would add bands of a padding
colour that themselves look like a plain backdrop. The aspect change (most inputs are 3:4
portraits) is mild and the same at training and serving time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from studioline.shared.errors import ImageRejected, ModelMissing
from studioline.shared.models.base import OnnxModel
from studioline.shared.models.packs import pack_files
from studioline.shared.models.store import INSTALL_HINT

NAME = "mobilenet_v2"
# The pack yields torchvision's weights; the ONNX file served is exported from them, named like the model.
(WEIGHTS_FILE,) = pack_files(NAME)
ONNX_FILE = f"{NAME}.onnx"
INPUT_SIZE = 224
FEATURE_DIM = 1280
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Each block: expansion t, output channels c, repeats n, first stride s (width multiplier 1.0).
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def build_mobilenet_v2():
    """torchvision.models.mobilenet_v2() with the same module names, so state_dict keys match."""
    import torch
    from torch import nn

    def conv_bn_relu(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int):
            super().__init__()
            hidden = inp * expand
            self.use_res_connect = stride == 1 and inp == out
            layers = [conv_bn_relu(inp, hidden, kernel=1)] if expand != 1 else []
            layers += [
                conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            channels = 32
            layers = [conv_bn_relu(3, channels, stride=2)]
            for t, c, n, s in _SETTINGS:
                for i in range(n):
                    layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                    channels = c
            layers.append(conv_bn_relu(channels, FEATURE_DIM, kernel=1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, 1000))

        def forward(self, x):
            """Returns (pooled features N x 1280, ImageNet logits N x 1000)."""
            pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)
            return pooled, self.classifier(pooled)

    return MobileNetV2()


def load_mobilenet_v2(weights: Path):
    """The torch module with torchvision's ImageNet weights, in eval mode."""
    import torch

    net = build_mobilenet_v2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def export_mobilenet_onnx(store_root: Path) -> Path:
    """Exports mobilenet_v2.onnx (outputs "features" and "logits", dynamic batch) into the store."""
    import torch

    store_root = Path(store_root)
    weights = store_root / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelMissing(f"model file {WEIGHTS_FILE} is missing from {store_root}; {INSTALL_HINT}")
    net = load_mobilenet_v2(weights)
    target = store_root / ONNX_FILE
    # Written beside the target and renamed, so a concurrent loader never sees half a file.
    tmp = target.with_name(f".{ONNX_FILE}.{os.getpid()}.part")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
                str(tmp),
                dynamo=False,  # the TorchScript exporter needs only the onnx package, not onnxscript
                input_names=["input"],
                output_names=["features", "logits"],
                dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 RGB as is; RGBA composited over white (a transparent cut-out reads as a packshot)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ImageRejected(f"expected an HxWx3 or HxWx4 uint8 image, got {image.dtype} {image.shape}")
    if image.shape[2] == 3:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255.0
    return (image[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)


def preprocess(images: list[np.ndarray]) -> np.ndarray:
    """N x 3 x 224 x 224 float32: direct resize (area filter, i.e. antialiased), ImageNet mean/std."""
    batch = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, image in enumerate(images):
        rgb = to_rgb(image)
        small = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        batch[i] = ((small.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return batch


class MobileNetV2Features(OnnxModel):
    name = NAME
    onnx_file = ONNX_FILE

    def _load(self) -> None:
        if not self.store.has(ONNX_FILE):
            self._export_if_possible()
        super()._load()

    def _export_if_possible(self) -> None:
        try:
            self.store.path(ONNX_FILE)  # may copy it from the models bucket
            return
        except ModelMissing:
            if not self.store.has(WEIGHTS_FILE):
                raise
        try:
            import torch  # noqa: F401  (only to learn whether the export can run here)
        except ImportError:
            raise ModelMissing(
                f"model file {ONNX_FILE} is missing from {self.store.root} and torch is not installed "
                f"to export it from {WEIGHTS_FILE}; {INSTALL_HINT}"
            ) from None
        export_mobilenet_onnx(self.store.root)

    def _predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime call for the batch: (features N x 1280, logits N x 1000), float32;
        row i of each is image i."""
        if not images:
            return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, 1000), np.float32)
        features, logits = self.session.run(["features", "logits"], {self.input_name: preprocess(images)})
        return features, logits
