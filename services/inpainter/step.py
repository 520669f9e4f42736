"""The inpainter step: removes dust and specks from a plain backdrop, or fills a given mask.

Auto mode finds small blemishes on the backdrop (morphological black-hat / top-hat against a
noise-aware contrast threshold, small components clear of the object only); the segmenter's
object mask, when the job carries one, tells the product from the backdrop. A fill_mask
artifact, when present, is filled exactly instead. Pixels outside the filled region are
returned byte for byte.
"""

from __future__ import annotations

import time

import numpy as np

from studioline.services.inpainter import ops
from studioline.services.inpainter.params import InpainterParams
from studioline.services.inpainter.spec import SPEC
from studioline.shared.errors import InvalidParams, MissingInput, PermanentError
from studioline.shared.step import OutputImage, Step, StepInput, StepOutput, fit_mask


class InpainterStep(Step):
    spec = SPEC

    def run(self, item: StepInput) -> StepOutput:
        params: InpainterParams = item.params
        image = item.image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise PermanentError(
                f"inpainter needs an HxWx3 or HxWx4 uint8 image, got {image.shape} {image.dtype}"
            )
        if params.method == "patchmatch" and not ops.patchmatch_available():
            raise InvalidParams("inpainter method 'patchmatch' needs the pypatchmatch package, which this deployment lacks")
        shape = image.shape[:2]
        start = time.perf_counter()
        if "fill_mask" in item.inputs:
            fill = np.where(fit_mask(item.inputs["fill_mask"], shape, self.name, "fill_mask") >= 128, 255, 0).astype(np.uint8)
            source = "fill_mask"
        elif params.mode == "mask":
            raise MissingInput("inpainter mode=mask needs a fill_mask, which the job does not carry")
        else:
            obj = item.inputs.get("mask")
            fill = ops.detect_specks(
                image, None if obj is None else fit_mask(obj, shape, self.name), **params.detection()
            )
            source = "detected"
        radius = params.patch_radius if params.method == "patchmatch" else params.radius
        cleaned = ops.inpaint(image, fill, params.method, radius)
        return StepOutput(
            images=[OutputImage(kind="cleaned", pixels=cleaned, format="png")],
            info={
                "specks": ops.count_specks(fill),
                "filled_fraction": round(float(np.mean(fill > 0)), 6),
                "fill_source": source,
                "seconds": round(time.perf_counter() - start, 3),
            },
        )
