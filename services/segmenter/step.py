"""The segmenter step: a soft foreground mask of the product (or person) in the image.

"auto" takes the classical segmenter on plain studio backgrounds when its mask passes the
plausibility checks (it is exact there, and costs no model run), and the `network` otherwise.
Every mask gets a quality score (ops.mask_quality) in its info; below `escalate_below` the image
is run again through the stronger `escalate_to` model inside the same step, and a final score
below `review_below` sets info "needs_review", which the worker copies onto the job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studioline.services.segmenter import ops
from studioline.services.segmenter.params import SegmenterParams
from studioline.services.segmenter.spec import SPEC
from studioline.shared.errors import ImageRejected, ModelMissing
from studioline.shared.models.base import Model
from studioline.shared.models.isnet import ISNet
from studioline.shared.models.registry import model_class
from studioline.shared.models.u2net import U2Net, U2Netp
from studioline.shared.step import BatchedStep, OutputImage, StepInput, StepOutput, each

DEFAULT_MODEL = U2Netp.name
MODELS = (U2Netp.name, U2Net.name, ISNet.name)


@dataclass
class _Plan:
    params: SegmenterParams
    rgb: np.ndarray
    prob: np.ndarray | None = None  # float32 HxW in [0, 1], once known
    model: str | None = None  # the model still to run, if any
    first_prob: np.ndarray | None = None  # the mask before escalating, kept in case that fails
    info: dict[str, Any] = field(default_factory=dict)


def has_real_alpha(alpha: np.ndarray) -> bool:
    """An alpha channel that cuts something out: some of it transparent, some of it opaque."""
    share = float((alpha >= 128).mean())
    return 0.001 <= share <= 0.999


class SegmenterStep(BatchedStep):
    spec = SPEC

    def __init__(self, settings, model_store):
        super().__init__(settings, model_store)
        self._models: dict[str, Model] = {}
        # Why an opt-in model is missing (its message, not the exception: a re-raised exception's
        # traceback grows at every raise and keeps each batch's images alive).
        self._missing: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        self._model(DEFAULT_MODEL)

    def warmup(self) -> None:
        super().warmup()  # auto on a plain synthetic image: the classical path
        self._model(DEFAULT_MODEL).warmup()

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()

    def _model(self, name: str) -> Model:
        with self._lock:  # gRPC workers may ask for u2net at the same time
            if name in self._missing:  # an opt-in pack not installed: do not look again per batch
                raise ModelMissing(self._missing[name])
            model = self._models.get(name)
            if model is None:
                try:
                    model = self.load_model(name)
                except ModelMissing as exc:
                    self._missing[name] = str(exc)
                    raise
                self._models[name] = model
            return model

    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """Plans every item, runs each model once over the items that need it, escalates the
        items whose mask scores low to the stronger model (again one run per model), then finishes."""
        plans: list[_Plan | Exception] = each(self._plan, items)
        self._run_models(plans)
        for plan in plans:
            if isinstance(plan, _Plan):
                self._assess(plan)
        self._run_models(plans)
        for plan in plans:
            if isinstance(plan, _Plan) and "quality" not in plan.info:  # the escalated ones
                self._assess(plan)
        return each(self._finish, plans)

    def _run_models(self, plans: list[_Plan | Exception]) -> None:
        for name in MODELS:
            todo = [i for i, p in enumerate(plans) if isinstance(p, _Plan) and p.model == name]
            if not todo:
                continue
            try:
                probs = self._model(name).predict([plans[i].rgb for i in todo])
            except Exception as exc:
                for i in todo:
                    plan = plans[i]
                    if plan.first_prob is None:
                        plans[i] = exc
                        continue
                    # The stronger model is a bonus (isnet is an opt-in pack): keep the first mask.
                    plan.prob, plan.model = plan.first_prob, None
                    plan.info["path"] = plan.info["escalated"]["from"]
                    plan.info["escalation_failed"] = f"{type(exc).__name__}: {exc}"
                continue
            for i, prob in zip(todo, probs):
                plans[i].prob = prob
                plans[i].model = None

    def _assess(self, plan: _Plan) -> None:
        """Scores the plan's mask; a low score on a first try sends it to the stronger model."""
        params = plan.params
        if plan.info["path"] == "alpha":
            plan.info["quality"] = 1.0
            return
        score, note = ops.mask_quality(plan.prob, threshold=params.threshold)
        if plan.info.get("warning"):  # a classical mask kept although it failed a plausibility check
            score, note = min(score, 0.5), plan.info["warning"]
        escalate = (
            score < params.escalate_below
            and not plan.info.get("escalated")
            and plan.info["path"] != params.escalate_to
        )
        if escalate:
            plan.info["escalated"] = {"from": plan.info["path"], "quality": round(score, 3), "note": note}
            plan.info["path"] = plan.model = params.escalate_to
            plan.first_prob, plan.prob = plan.prob, None
            return
        plan.info["quality"] = round(score, 3)
        if note:
            plan.info["quality_note"] = note
        if score < params.review_below:
            plan.info["needs_review"] = True

    def _plan(self, item: StepInput) -> _Plan:
        params: SegmenterParams = item.params
        image = item.image
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ImageRejected(f"segmenter needs an HxWx3 or HxWx4 uint8 image, got {image.shape} {image.dtype}")
        plan = _Plan(params=params, rgb=np.ascontiguousarray(image[..., :3]))
        if image.shape[2] == 4 and params.use_alpha and has_real_alpha(image[..., 3]):
            plan.prob = image[..., 3].astype(np.float32) / 255.0
            plan.info["path"] = "alpha"
            return plan
        if params.model in MODELS:
            plan.model = params.model
            plan.info["path"] = params.model
            return plan
        stats = ops.border_stats(plan.rgb)
        plan.info["border_uniformity"] = round(stats.uniformity, 4)
        if params.model == "classical" or stats.uniformity >= params.plain_uniformity:
            result = ops.classical_segment(
                plan.rgb,
                min_component=params.min_component,
                holes=params.fill_holes,
                grabcut=params.grabcut,
            )
            reason = ops.implausible(result)
            if params.model == "classical" or reason is None:
                plan.prob = result.prob
                plan.info["path"] = "classical"
                if reason:
                    plan.info["warning"] = reason
                return plan
            plan.info["fallback"] = reason
        else:
            plan.info["fallback"] = "background not plain"
        plan.model = plan.info["path"] = params.network
        return plan

    def _finish(self, plan: _Plan) -> StepOutput:
        params = plan.params
        if params.refine == "backdrop" and plan.info["path"] in MODELS:
            uniformity = plan.info.get("border_uniformity")
            if uniformity is None:
                uniformity = plan.info["border_uniformity"] = round(ops.border_stats(plan.rgb).uniformity, 4)
            if uniformity >= params.plain_uniformity:
                side = model_class(plan.info["path"]).size
                plan.prob = ops.refine_with_backdrop(plan.rgb, plan.prob, network_side=side, holes=params.fill_holes)
                plan.info["refined"] = "backdrop"
        if plan.info["path"] == "alpha":
            mask = np.clip(plan.prob * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            mask = ops.clean_mask(
                plan.prob, threshold=params.threshold, min_component=params.min_component, holes=params.fill_holes
            )
        cut = round(params.threshold * 255)
        if not params.soft:
            mask = np.where(mask >= cut, 255, 0).astype(np.uint8)
        info = plan.info
        info["foreground_fraction"] = round(float((mask >= cut).mean()), 4)
        warning = info.pop("warning", "")
        return StepOutput(
            images=[OutputImage(kind="mask", pixels=mask, format="png")],
            info=info,
            quality=info.pop("quality"),
            quality_note=info.pop("quality_note", ""),
            needs_review=info.pop("needs_review", False),
            warnings=[warning] if warning else [],
        )
