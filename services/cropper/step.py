"""The cropper step: one crop per requested aspect ratio, around the product or where the
saliency is (img-focus ViT-S map weighted by a centre prior)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studioline.services.cropper import ops
from studioline.services.cropper.params import CropperParams
from studioline.services.cropper.spec import SPEC
from studioline.shared.errors import MissingInput, PermanentError
from studioline.shared.imageops import hex_to_rgb
from studioline.shared.models.saliency import spectral_residual_saliency
from studioline.shared.step import BatchedStep, OutputImage, StepInput, StepOutput, each

SALIENCY_MODEL = "vit_s_focus"


@dataclass
class _Job:
    params: CropperParams
    rgb: np.ndarray
    mask: np.ndarray | None
    mode: str  # "product" or "saliency", resolved from "auto"
    pad_colour: tuple[int, int, int]
    warning: str = ""  # set when the asked-for mode could not be honoured
    saliency: np.ndarray | None = None  # the model's map, when the crop follows it


def _prepare(item: StepInput) -> _Job:
    params: CropperParams = item.params
    image = item.image
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise PermanentError(f"cropper needs an HxWx3 or HxWx4 uint8 image, got {image.shape} {image.dtype}")
    mask = item.inputs.get("mask")
    if mask is not None:
        if mask.ndim != 2:
            raise PermanentError(f"cropper needs an HxW mask, got shape {mask.shape}")
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    elif image.shape[2] == 4:
        mask = image[..., 3]  # a cut-out carries its own mask
    pad = hex_to_rgb(params.pad_colour) if params.pad_colour != "auto" else (255, 255, 255)
    if image.shape[2] == 4:  # flatten on the pad colour: crops are written as JPEG
        a = image[..., 3:].astype(np.float32) / 255.0
        rgb = (image[..., :3] * a + np.float32(pad) * (1.0 - a) + 0.5).astype(np.uint8)
    else:
        rgb = image
    has_product = mask is not None and ops.mask_bbox(mask) is not None
    warning = ""
    if params.mode == "product":
        if mask is None:
            raise MissingInput("cropper mode=product needs a mask (or an RGBA cut-out), which the job does not carry")
        if not has_product:
            # The segmenter found nothing: crops that follow the picture's subject still serve,
            # and a person looks at the job rather than losing it.
            warning = "the product mask is empty: cropped by saliency instead"
    mode = "product" if has_product and params.mode in ("product", "auto") else "saliency"
    if mode == "product" and params.pad_colour == "auto":
        pad = ops.auto_pad_colour(rgb, mask)
    return _Job(params, rgb, mask, mode, pad, warning)


class CropperStep(BatchedStep):
    spec = SPEC

    saliency_model = None

    def load(self) -> None:
        self.saliency_model = self.load_model(SALIENCY_MODEL)

    def run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        """One saliency-model call for every item of the batch that needs it."""
        jobs: list[_Job | Exception] = each(_prepare, items)
        need_model = [j for j in jobs if isinstance(j, _Job) and j.mode == "saliency" and j.params.saliency == "model"]
        if need_model:
            for job, saliency in zip(need_model, self.saliency_model.predict([j.rgb for j in need_model])):
                job.saliency = saliency
        return each(self._crop, jobs)

    def _crop(self, job: _Job) -> StepOutput:
        p, saliency = job.params, job.saliency
        images, boxes, kept = [], {}, {}
        if job.mode == "saliency":
            if saliency is None:
                saliency = spectral_residual_saliency(job.rgb)
            search = ops.saliency_mass(saliency, p.centre_prior)
            plain = ops.saliency_mass(saliency, 0.0)
        for aspect in p.aspects:
            aspect_text = str(aspect)
            if job.mode == "product":
                box = ops.product_window(job.mask, aspect.ratio, p.margin)
            else:
                box = ops.best_window(search, aspect.ratio, p.min_scale, p.keep)
                kept[aspect_text] = round(ops.covered_fraction(plain, box), 4)
            crop = ops.fit_max_side(ops.crop_padded(job.rgb, box, job.pad_colour), p.max_side)
            boxes[aspect_text] = [int(v) for v in box]
            images.append(
                OutputImage(kind="crop", pixels=crop, params={"aspect": aspect_text, "mode": job.mode}, format="jpeg")
            )
        info = {"mode": job.mode, "boxes": boxes}
        if job.mode == "saliency":
            info["saliency"] = p.saliency
            info["saliency_kept"] = kept
        else:
            info["pad_colour"] = "#%02X%02X%02X" % job.pad_colour
        warnings = [job.warning] if job.warning else []
        return StepOutput(images=images, info=info, warnings=warnings, needs_review=bool(warnings))

    def close(self) -> None:
        if self.saliency_model is not None:
            self.saliency_model.close()
        self.saliency_model = None
