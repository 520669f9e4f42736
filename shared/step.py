"""The step interface every service implements, and the registry of steps by name.

A step is an image operation with a fixed lifecycle (load, warm up, serve, close). It receives
a batch of items at once, so a later dynamic batcher can hand it Kafka and gRPC work together
without a new interface; steps without batched models just loop.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from studioline.shared.errors import InvalidParams, MissingInput, PermanentError

# Later steps work on the latest artifact of this kind when the job has one (the inpainter's
# output), else on the source image.
WORKING_IMAGE_KIND = "cleaned"


class StepParams(BaseModel):
    """Base of every step's parameters: unknown names are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StepInput:
    image: np.ndarray  # the working image: HxWx3 RGB (or HxWx4 RGBA) uint8
    params: StepParams
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # auxiliary artifacts by kind
    job_id: str = ""


@dataclass
class OutputImage:
    kind: str
    pixels: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)  # tells apart outputs of one kind
    format: str = "png"


@dataclass
class StepOutput:
    images: list[OutputImage] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Step(ABC):
    """One step of the line. Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]  # service name, e.g. "segmenter"
    Params: ClassVar[type[StepParams]]
    # Artifact kinds this step reads besides the working image (e.g. ("mask",)).
    consumes: ClassVar[tuple[str, ...]] = ()
    # Artifact kinds it reads when present but can do without.
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    # Artifact kinds it writes; the router prunes steps whose products nobody wants.
    produces: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings, model_store):
        self.settings = settings
        self.models = model_store

    def load(self) -> None:
        """Loads models; called once before serving."""

    def warmup(self) -> None:
        """Runs the step once on a synthetic image so the first real request is not slow."""
        rng = np.random.default_rng(0)
        image = np.full((256, 256, 3), 245, np.uint8)
        image[64:192, 80:176] = rng.integers(0, 200, (128, 96, 3), dtype=np.uint8)
        inputs = {}
        for kind in self.consumes:
            inputs[kind] = _warmup_input(kind, image)
        self.run(StepInput(image=image, params=self.Params(), inputs=inputs))

    @abstractmethod
    def run(self, item: StepInput) -> StepOutput:
        """Processes one image."""

    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """Processes a batch; one failing item never fails the others."""
        results: list[StepOutput | Exception] = []
        for item in items:
            try:
                results.append(self.run(item))
            except Exception as exc:  # reported per item by the caller
                results.append(exc)
        return results

    def close(self) -> None:
        """Releases models."""

    def load_model(self, name: str):
        """Creates and loads the registered model `name` on the configured device and threads."""
        from studioline.shared.config import ModelSettings
        from studioline.shared.models.base import model_class

        cfg = self.settings.models if self.settings is not None else ModelSettings()
        model = model_class(name)(self.models, device=cfg.device, threads=cfg.intra_op_threads)
        model.load()
        return model

    @classmethod
    def parse_params(cls, raw: dict[str, Any] | None) -> StepParams:
        try:
            return cls.Params(**(raw or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidParams(f"invalid parameters for {cls.name}: {problems}") from exc

    @classmethod
    def check_inputs(cls, inputs: dict[str, np.ndarray]) -> None:
        missing = [k for k in cls.consumes if k not in inputs]
        if missing:
            raise MissingInput(f"{cls.name} needs the artifact(s) {', '.join(missing)}, which the job does not carry")


class BatchedStep(Step):
    """A step whose model runs a whole batch in one call: it implements `run_batch`, and a
    single item is a batch of one."""

    def run(self, item: StepInput) -> StepOutput:
        (result,) = self.run_batch([item])
        if isinstance(result, Exception):
            raise result
        return result

    @abstractmethod
    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """Processes a batch; one failing item never fails the others."""


def fit_mask(mask: np.ndarray, shape: tuple[int, int], step: str, kind: str = "mask") -> np.ndarray:
    """A step's HxW uint8 mask input at the image's size (a mask kept at a model's working
    size is resized; the runtime itself rejects mismatched artifacts before a step runs)."""
    import cv2

    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise PermanentError(f"{step} needs an HxW uint8 {kind}, got {mask.shape} {mask.dtype}")
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return mask


def _warmup_input(kind: str, image: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[64:192, 80:176] = 255
    if kind == "mask":
        return mask
    if kind == "cutout":
        return np.dstack([image, mask])
    raise PermanentError(f"no warm-up input defined for artifact kind {kind}")


# Step classes by service name, imported lazily so a service loads only its own code.
STEP_CLASSES = {
    "classifier": "studioline.services.classifier.step:ClassifierStep",
    "segmenter": "studioline.services.segmenter.step:SegmenterStep",
    "matting": "studioline.services.matting.step:MattingStep",
    "inpainter": "studioline.services.inpainter.step:InpainterStep",
    "cropper": "studioline.services.cropper.step:CropperStep",
    "catalog-generator": "studioline.services.catalog_generator.step:CatalogGeneratorStep",
}


def step_class(name: str) -> type[Step]:
    try:
        target = STEP_CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(STEP_CLASSES)}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
