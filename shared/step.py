"""The step interface every service implements: what a step receives and what it returns.

A step is an image operation with a fixed lifecycle (load, warm up, serve, close). It receives
a batch of items at once, so the dynamic batcher can hand it Kafka and gRPC work together;
steps without batched models just loop. What a step is (name, parameters, artifact kinds) is
its spec (shared/spec.py); the class holds only the code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from studioline.shared.errors import PermanentError

if TYPE_CHECKING:
    from studioline.shared.spec import StepSpec


class StepParams(BaseModel):
    """Base of every step's parameters: unknown names are errors, not silently ignored; NaN and
    infinities are never a valid number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def output_pixels(self, width: int, height: int) -> int:
        """At most how many pixels the step writes, all outputs together, for a width x height
        image with these parameters (bounds a reply before the work is done). A step that
        writes more than one image of the input's size overrides it."""
        return width * height


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


@dataclass(frozen=True)
class Route:
    """What a routing step found out about an image; the router plans the chain from it."""

    image_type: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class StepOutput:
    """A step's typed result: its images and its report. The report's fields reach the done
    event (JobEvent.reports) and the gRPC reply alike."""

    images: list[OutputImage] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # step-specific facts: boxes, paths, timings
    quality: float | None = None  # the step's own 0..1 estimate of how good its result is
    quality_note: str = ""  # what lowered it
    needs_review: bool = False  # a person should look at this job
    warnings: list[str] = field(default_factory=list)  # done, but not as asked
    refusals: dict[str, str] = field(default_factory=dict)  # parts of the work declined, and why
    route: Route | None = None  # routing steps only


class Step(ABC):
    """One step of the line. Subclasses set `spec` and implement `run` (or `run_batch`)."""

    spec: ClassVar["StepSpec"]

    def __init__(self, settings, model_store):
        self.settings = settings
        self.models = model_store

    @property
    def name(self) -> str:
        return self.spec.name

    def load(self) -> None:
        """Loads models; called once before serving."""

    def warmup(self) -> None:
        """Runs the step once on a synthetic image so the first real request is not slow."""
        rng = np.random.default_rng(0)
        image = np.full((256, 256, 3), 245, np.uint8)
        image[64:192, 80:176] = rng.integers(0, 200, (128, 96, 3), dtype=np.uint8)
        inputs = {kind: _warmup_input(kind, image) for kind in self.spec.consumes}
        self.run(StepInput(image=image, params=self.spec.params(), inputs=inputs))

    @abstractmethod
    def run(self, item: StepInput) -> StepOutput:
        """Processes one image."""

    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """Processes a batch; one failing item never fails the others."""
        return each(self.run, items)

    def close(self) -> None:
        """Releases models."""

    def load_model(self, name: str):
        """Creates and loads the registered model `name` on the configured device and threads;
        only a model the step's spec declares (the chart and the image ship those)."""
        from studioline.shared.config import ModelSettings
        from studioline.shared.models.registry import open_model

        if name not in self.spec.models:
            raise ValueError(f"{self.name} loads {name!r}, which its spec does not declare ({', '.join(self.spec.models)})")
        cfg = self.settings.models if self.settings is not None else ModelSettings()
        return open_model(name, self.models, device=cfg.device, threads=cfg.intra_op_threads)


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


def each(fn: Callable[[Any], Any], items: list) -> list:
    """fn over items; an item whose call raises gets its exception as its result, so one bad
    image never fails the others of its batch (the caller reports it per item). An item that
    is already an exception (it failed an earlier pass) is passed on as it is."""
    results = []
    for item in items:
        if isinstance(item, Exception):
            results.append(item)
            continue
        try:
            results.append(fn(item))
        except Exception as exc:  # reported per item by the caller
            results.append(exc)
    return results


def _warmup_input(kind: str, image: np.ndarray) -> np.ndarray:
    """A synthetic input of `kind` over the warm-up image, shaped as the kind decodes."""
    from studioline.shared.steps import artifact_kinds

    mask = np.zeros(image.shape[:2], np.uint8)
    mask[64:192, 80:176] = 255
    pixels = artifact_kinds()[kind].pixels
    if pixels == "mask":
        return mask
    if pixels == "rgba":
        return np.dstack([image, mask])
    return image
