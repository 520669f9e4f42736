"""The matting step: turns the segmenter's (soft) mask into a halo-free RGBA cut-out.

Trimap from the mask (an unknown band that follows the mask's uncertainty and the image's
texture), expanded where unknown pixels sit next to known ones of their colour; alpha by
closed-form matting (or information-flow, their mean, KNN, large-kernel) on a bounded number of
unknown pixels, near-0/1 values snapped, with guided upsampling; foreground colours re-estimated
under the alpha; the cut-out is at the input's full resolution.
"""

from __future__ import annotations

import time

import numpy as np

from studioline.services.matting import ops
from studioline.services.matting.params import MattingParams
from studioline.services.matting.spec import SPEC
from studioline.shared.errors import PermanentError
from studioline.shared.step import OutputImage, Step, StepInput, StepOutput, fit_mask


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise PermanentError(f"matting needs an HxWx3 or HxWx4 uint8 image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


class MattingStep(Step):
    spec = SPEC

    def run(self, item: StepInput) -> StepOutput:
        params: MattingParams = item.params
        image = _rgb(item.image)
        mask = fit_mask(item.inputs["mask"], image.shape[:2], self.name)
        start = time.perf_counter()
        matte = ops.cutout(image, mask, **params.model_dump())
        return StepOutput(
            images=[OutputImage(kind="cutout", pixels=matte.rgba, format="png")],
            info={
                "trimap_unknown_fraction": round(matte.unknown_fraction, 4),
                "stage_seconds": {k: round(v, 3) for k, v in matte.seconds.items()},
                "seconds": round(time.perf_counter() - start, 3),
            },
        )
