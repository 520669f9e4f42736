"""The classifier step: tells what kind of product photo an image is, so the router picks a chain.

MobileNetV2 ImageNet features (onnxruntime) and a few cheap cues about the frame (ops.py) go
into a small linear softmax head trained on the project's labelled photos (train.py), with a
temperature fitted on held-out photos so that `confidence` is calibrated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studioline.services.classifier import ops
from studioline.services.classifier.params import ClassifierParams
from studioline.services.classifier.spec import SPEC
from studioline.shared.models.mobilenet import FEATURE_DIM, to_rgb
from studioline.shared.step import BatchedStep, Route, StepInput, StepOutput, each

IMAGE_TYPES = (
    "product_on_white",
    "on_model_studio",
    "lifestyle_on_model_street",
    "flat_lay_or_hanging_amateur",
    "other",
)
HEAD_FILES = {"v1": Path(__file__).parent / "head_v1.npz"}
BACKBONE = "mobilenet_v2"


@dataclass(frozen=True)
class Head:
    """A linear softmax head over [backbone features, cues], as written by train.save_head."""

    version: str
    classes: tuple[str, ...]
    cue_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # classes x inputs
    bias: np.ndarray
    temperature: float
    metrics: dict

    @classmethod
    def load(cls, path: Path) -> "Head":
        with np.load(path, allow_pickle=False) as f:
            head = cls(
                version=str(f["version"]),
                classes=tuple(str(c) for c in f["classes"]),
                cue_names=tuple(str(c) for c in f["cue_names"]),
                mean=f["mean"].astype(np.float32),
                std=f["std"].astype(np.float32),
                weight=f["weight"].astype(np.float32),
                bias=f["bias"].astype(np.float32),
                temperature=float(f["temperature"]),
                metrics=json.loads(str(f["metrics"])),
            )
        inputs = FEATURE_DIM + len(ops.CUE_NAMES)
        if head.cue_names != ops.CUE_NAMES or head.weight.shape != (len(head.classes), inputs):
            raise ValueError(f"head {path} was trained on other inputs than this code computes; retrain it")
        return head

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return ops.head_probabilities(x, self.mean, self.std, self.weight, self.bias, self.temperature)

    def logit_terms(self, x: np.ndarray) -> np.ndarray:
        """Classes x inputs: each input's share (weight x standardised value) of each class's logit,
        before the temperature, for one image's inputs x (D,); a row plus its bias is the logit."""
        return self.weight * ((x - self.mean) / self.std)


def describe(backbone, images: list[np.ndarray]) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The head's inputs (N x (1280 + cues)) and the cues by name, for N >= 1 images, one backbone call."""
    work = [ops.work_image(to_rgb(image)) for image in images]
    cues = [ops.compute_cues(w) for w in work]
    features, _ = backbone.predict(work)
    x = np.hstack([features, np.stack([ops.cue_vector(c) for c in cues])])
    return x.astype(np.float32), cues


class ClassifierStep(BatchedStep):
    spec = SPEC

    backbone = None
    heads: dict[str, Head] | None = None

    def load(self) -> None:
        self.backbone = self.load_model(BACKBONE)
        self.heads = {version: Head.load(path) for version, path in HEAD_FILES.items()}

    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """One backbone call for the whole batch; an item that fails alone fails alone."""
        results: list = each(to_rgb, [item.image for item in items])
        good = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        if not good:
            return results
        try:
            x, cues = describe(self.backbone, [results[i] for i in good])
        except Exception as exc:  # the batch's one model call failed: every item in it did
            for i in good:
                results[i] = exc
            return results
        for row, i in enumerate(good):
            results[i] = self.output(items[i].params, x[row : row + 1], cues[row])
        return results

    def output(self, params: ClassifierParams, x: np.ndarray, cues: dict[str, float]) -> StepOutput:
        """The step's result for one image from its head inputs x (1 x D) and cues (see describe)."""
        head = self.heads[params.head_version]
        probs = head.probabilities(x)[0]
        best = int(probs.argmax())
        info = {
            "image_type": head.classes[best],
            "confidence": float(probs[best]),
            "scores": {c: float(p) for c, p in zip(head.classes, probs)},
            "head_version": head.version,
        }
        if params.include_cues:
            info["cues"] = {k: round(v, 4) for k, v in cues.items()}
        return StepOutput(images=[], info=info, route=Route(info["image_type"], info["confidence"], info["scores"]))

    def close(self) -> None:
        if self.backbone is not None:
            self.backbone.close()
        self.backbone = None
