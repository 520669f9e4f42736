"""Try-on on the C2 high-res on-model photos: time per composite at native resolution and at
1024 px (longer side), template preparation (pose, person mask, garment region) timed apart.

Each on-model photo gets a garment of garment_vitonhd (in turn); the garment's alpha comes from
U2Netp, as the production chain's segmenter would give it. Writes bench/results/compose_hd.json
and, as pictures of research data may not be committed, out/compose_hd/<photo>.jpg.

    .venv/bin/python bench/compose_hd.py
"""

from __future__ import annotations

import json
import statistics
import time

import cv2
import numpy as np

from bench.common import RESULTS, ROOT, data_set, now_iso, write_json
from studioline.services.catalog_generator import templates, tryon
from studioline.services.catalog_generator.prepare import prepare_template
from studioline.shared.errors import PermanentError
from studioline.shared.models.pose import BlazePose
from studioline.shared.models.store import ModelStore
from studioline.shared.models.u2net import U2Netp

MODEL_FOLDERS = ("model_vitonhd", "scraped_ecom_onmodel", "model_dresscode")
WORK_SIDE = 1024


def rgb(path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])


def at_side(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    k = side / max(h, w)
    return cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)


def timed_try_on(template: templates.Template, garment: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out, _ = tryon.try_on(template.photo, template.person, template.region, template.landmarks, garment, alpha, 0.5)
    return out, time.perf_counter() - start


def main() -> None:
    c2 = data_set("C2_tryon_examples_hd")
    store = ModelStore(ROOT / ".models")
    pose, seg = BlazePose(store), U2Netp(store)
    pose.load()
    seg.load()
    garments = sorted((c2 / "garment_vitonhd").glob("*.jpg"))
    photos = [p for folder in MODEL_FOLDERS for p in sorted((c2 / folder).glob("*.jpg"))]
    out_dir = ROOT / "out" / "compose_hd"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for i, path in enumerate(photos):
        garment = rgb(garments[i % len(garments)])
        alpha = (seg.predict([garment])[0] * 255 + 0.5).astype(np.uint8)
        photo = rgb(path)
        try:
            start = time.perf_counter()
            template = prepare_template(photo, pose)
            prepare_s = time.perf_counter() - start
            native, native_s = timed_try_on(template, garment, alpha)
            small = prepare_template(at_side(photo, WORK_SIDE), pose)
            _, side_s = timed_try_on(small, garment, alpha)
        except PermanentError as exc:
            failed.append({"photo": f"{path.parent.name}/{path.name}", "error": str(exc)})
            continue
        cv2.imwrite(str(out_dir / f"{path.stem}.jpg"), np.concatenate([photo, native], axis=1)[..., ::-1])
        rows.append({
            "photo": f"{path.parent.name}/{path.name}", "garment": garments[i % len(garments)].name,
            "width": photo.shape[1], "height": photo.shape[0], "prepare_s": round(prepare_s, 3),
            "native_s": round(native_s, 3), "s_at_1024": round(side_s, 3),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "n": len(rows),
        "failed": failed,
        "median_native_s": round(statistics.median(r["native_s"] for r in rows), 3),
        "median_s_at_1024": round(statistics.median(r["s_at_1024"] for r in rows), 3),
        "max_s_at_1024": max(r["s_at_1024"] for r in rows),
        "median_prepare_s": round(statistics.median(r["prepare_s"] for r in rows), 3),
        "median_megapixels": round(statistics.median(r["width"] * r["height"] / 1e6 for r in rows), 2),
        "rows": rows,
        "measured_at": now_iso(),
    }
    write_json(RESULTS / "compose_hd.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
