"""Trimaps from the segmenter's mask, compared on the alphamatting.com images: a fixed band
against the band that follows the mask's uncertainty (with and without the texture widening).

Each image's soft mask comes from the SegmenterStep (u2netp, as the on-model chains run it);
each trimap is solved by the same matting (the step's default solver) and scored by the
whole-image SAD / 1000 against the ground-truth alpha (the trimap is ours here, so the error
counts everywhere), beside the share of unknown pixels. Writes bench/results/matting_trimap.json.

    .venv/bin/python -m bench.matting_trimap
"""

from __future__ import annotations

import json
import statistics

import cv2
import numpy as np

from bench.common import RESULTS, data_set, now_iso, write_json
from studioline.services.matting import ops
from studioline.services.matting.params import MattingParams
from studioline.services.segmenter.step import SegmenterStep
from studioline.shared.config import get_settings
from studioline.shared.models.store import ModelStore
from studioline.shared.step import StepInput

TRIMAPS = {
    "fixed band 1%": {"band": 0.01, "min_band": 0.01},
    "fixed band 1.3%": {"band": 0.013, "min_band": 0.013},
    "uncertainty band, no texture": {"texture_gain": 0.0},
    "uncertainty band (default)": {},
}


def main() -> None:
    root = data_set("A_alphamatting_lowres")
    settings = get_settings()
    segmenter = SegmenterStep(settings, ModelStore(settings.models.dir))
    segmenter.load()
    params = MattingParams()
    per_image, sad, unknown = [], {k: [] for k in TRIMAPS}, {k: [] for k in TRIMAPS}
    for gt_path in sorted((root / "gt_training_lowres").glob("*.png")):
        image = np.ascontiguousarray(cv2.imread(str(root / "input_training_lowres" / gt_path.name))[..., ::-1])
        gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255.0
        (seg,) = segmenter.run_batch([StepInput(image=image, params=segmenter.spec.params(model="u2netp"))])
        mask = seg.images[0].pixels
        row = {"name": gt_path.stem, "mask_sad": round(float(np.abs(mask / 255.0 - gt).sum() / 1000), 3)}
        for name, kwargs in TRIMAPS.items():
            trimap = ops.trimap_from_mask(mask, image=image, **{**params.trimap(), **kwargs})
            alpha = ops.estimate_alpha(image, trimap, **params.solver())
            sad[name].append(float(np.abs(alpha - gt).sum() / 1000))
            unknown[name].append(float((trimap == ops.UNKNOWN).mean()))
            row[name] = {"sad": round(sad[name][-1], 3), "unknown_fraction": round(unknown[name][-1], 4)}
        per_image.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "n": len(per_image),
        "solver": params.method,
        "mask_sad_mean": round(statistics.mean(r["mask_sad"] for r in per_image), 3),
        "trimaps": {
            name: {
                "params": kwargs,
                "sad_mean": round(statistics.mean(sad[name]), 3),
                "sad_median": round(statistics.median(sad[name]), 3),
                "unknown_fraction_mean": round(statistics.mean(unknown[name]), 4),
            }
            for name, kwargs in TRIMAPS.items()
        },
        "images": per_image,
        "measured_at": now_iso(),
    }
    write_json(RESULTS / "matting_trimap.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "images"}))


if __name__ == "__main__":
    main()
