"""Cut-out at full resolution on the C2 high-res photos: segment (segmenter `auto`), then
matte (trimap, alpha, foreground colours), output at the input's size.

The real SegmenterStep and MattingStep run one photo at a time with their default parameters
(onnxruntime with 2 threads, as configured); decoding is not timed. The photos here are 0.6 to
1.7 MP, so a seeded sample of them is also run enlarged (bicubic) to a long side of 2732 px
(2048x2732, 5.6 MP) to time the large-image path. Per-stage medians go to
bench/results/matting_hd.json. Timings depend on what else loads the 2 CPU cores: run it on
a quiet machine.

    .venv/bin/python -m bench.matting_hd [--n N] [--n-large N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import cv2
import numpy as np

from bench.common import RESULTS, data_set, now_iso, photos, write_json
from studioline.services.matting.step import MattingStep
from studioline.services.segmenter.step import SegmenterStep
from studioline.shared.config import get_settings
from studioline.shared.models.store import ModelStore
from studioline.shared.step import StepInput

STAGES = ("segment", "trimap", "alpha", "foreground", "matting", "total")
LARGE_SIDE = 2732


def enlarge(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    k = side / max(h, w)
    return cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)


def cut_out(segmenter: SegmenterStep, matting: MattingStep, image: np.ndarray) -> dict:
    """Seconds per stage of one photo's cut-out, and what the steps reported."""
    start = time.perf_counter()
    (seg,) = segmenter.run_batch([StepInput(image=image, params=segmenter.spec.params(model="auto"))])
    if isinstance(seg, Exception):
        raise seg
    mid = time.perf_counter()
    out = matting.run(StepInput(image=image, params=matting.spec.params(), inputs={"mask": seg.images[0].pixels}))
    end = time.perf_counter()
    if out.images[0].pixels.shape[:2] != image.shape[:2]:
        raise AssertionError("the cut-out must keep the input's resolution")
    return {
        "width": image.shape[1], "height": image.shape[0], "segment_path": seg.info.get("path"),
        "unknown_fraction": out.info["trimap_unknown_fraction"], "segment": round(mid - start, 3),
        **out.info["stage_seconds"], "matting": round(end - mid, 3), "total": round(end - start, 3),
    }  # fmt: skip


def medians(rows: list[dict]) -> dict:
    return {stage: round(statistics.median(r[stage] for r in rows), 3) for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="a seeded sample of this many photos (default: all)")
    parser.add_argument("--n-large", type=int, default=12, help=f"photos also run enlarged to {LARGE_SIDE} px")
    args = parser.parse_args()
    settings = get_settings()
    store = ModelStore(settings.models.dir)
    segmenter, matting = SegmenterStep(settings, store), MattingStep(settings, store)
    for step in (segmenter, matting):
        step.load()
    segmenter.warmup()
    rows, large = [], []
    load_before = os.getloadavg()[0]
    for path in photos(data_set("C2_tryon_examples_hd"), args.n):
        image = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
        rows.append({"photo": f"{path.parent.name}/{path.name}", **cut_out(segmenter, matting, image)})
        print(json.dumps(rows[-1]), flush=True)
    for path in photos(data_set("C2_tryon_examples_hd"), args.n_large, seed=1):
        image = enlarge(np.ascontiguousarray(cv2.imread(str(path))[..., ::-1]), LARGE_SIDE)
        large.append({"photo": f"{path.parent.name}/{path.name}", **cut_out(segmenter, matting, image)})
        print(json.dumps(large[-1]), flush=True)
    result = {
        "n": len(rows),
        "median_s": medians(rows),
        "max_total_s": max(r["total"] for r in rows),
        "median_megapixels": round(statistics.median(r["width"] * r["height"] / 1e6 for r in rows), 2),
        f"n_at_{LARGE_SIDE}": len(large),
        f"median_s_at_{LARGE_SIDE}": medians(large) if large else None,
        "matting_params": matting.spec.params().model_dump(),
        "note": "2-core machine; other work on it inflates these timings (load average: 1-minute, before/after)",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
        f"rows_at_{LARGE_SIDE}": large,
        "measured_at": now_iso(),
    }
    write_json(RESULTS / "matting_hd.json", result)
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("rows")}))


if __name__ == "__main__":
    main()
