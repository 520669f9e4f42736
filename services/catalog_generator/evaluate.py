"""`studioline eval compose`: try-on scored against the real photo on VITON-style paired data.

For each line `X_0.jpg X_1.jpg` (person X_0 wears garment X_1): the person photo is prepared as
a template (our pose model, person mask and garment region), the garment's alpha comes from
cloth-mask/, and X_1 is put on X_0. The photo's own garment is the answer, so it is removed
first: the union of our region and the dataset's upper-clothes label (parse 5), dilated, is
inpainted before either method runs, and the shading transfer is off (it would copy the answer's
folds). Scores: SSIM (grey, 7x7, scikit-image) averaged and PSNR over the real garment region
(parse label 5), for our composite and for the naive paste (the cut-out scaled to the torso box).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from studioline.services.catalog_generator.body import Body
from studioline.services.catalog_generator.garment import garment_rgba
from studioline.services.catalog_generator.prepare import prepare_template
from studioline.services.catalog_generator.tryon import remove_garment, try_on
from studioline.shared.errors import PermanentError

UPPER_CLOTHES = 5
SHEET_PAIRS = 24


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PermanentError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise PermanentError(f"{path}:{n}: expected 'person.jpg garment.jpg', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def region_scores(ours: np.ndarray, real: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """SSIM (mean of the grey SSIM map) and PSNR (RGB, 8-bit peak) over the region's pixels."""
    grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (ours, real)]
    _, ssim_map = structural_similarity(grey[0], grey[1], data_range=255, full=True, win_size=7)
    ssim = float(ssim_map[region].mean())
    mse = float(((ours[region].astype(np.float64) - real[region].astype(np.float64)) ** 2).mean())
    psnr = float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    return ssim, psnr


def naive_paste(photo: np.ndarray, landmarks: np.ndarray, garment: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The baseline: the garment's cut-out scaled to the torso box (shoulder and hip joints' box)
    and pasted over the photo."""
    body = Body.from_landmarks(landmarks)
    pts = np.array([body.shoulder_left, body.shoulder_right, body.hip_left, body.hip_right])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    ys, xs = np.nonzero(alpha > 127)
    if ys.size == 0:
        raise PermanentError("try-on: the garment mask is empty")
    crop = garment_rgba(garment, alpha)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    scaled = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA)
    out = photo.astype(np.float32) / 255.0
    h, w = photo.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x0 + bw), min(h, y0 + bh)
    if cx1 > cx0 and cy1 > cy0:
        part = scaled[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        roi = out[cy0:cy1, cx0:cx1]
        roi[:] = roi * (1.0 - part[..., 3:]) + part[..., :3]
    return (out * 255.0 + 0.5).astype(np.uint8)


def compose_pair(root: Path, person_name: str, cloth_name: str, pose_model) -> dict:
    real = read_rgb(root / "image" / person_name)
    garment = read_rgb(root / "cloth" / cloth_name)
    cmask = cv2.imread(str(root / "cloth-mask" / cloth_name), cv2.IMREAD_GRAYSCALE)
    if cmask is None:
        raise PermanentError(f"no cloth-mask for {cloth_name}")
    alpha = np.where(cmask >= 128, 255, 0).astype(np.uint8)  # JPEG masks: threshold at 128
    parse_path = root / "image-parse" / (Path(person_name).stem + ".png")
    if not parse_path.is_file():
        raise PermanentError(f"no image-parse map for {person_name}")
    truth = np.asarray(Image.open(parse_path)) == UPPER_CLOTHES  # palette indices are the labels
    start = time.perf_counter()
    template = prepare_template(real, pose_model)
    prepared = time.perf_counter()
    # Remove what they wear (our region and the true one) so nothing of the answer stays.
    erase = cv2.dilate((template.region | truth).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    erased = remove_garment(real, erase)
    composed = time.perf_counter()
    ours, _ = try_on(erased, template.person, template.region, template.landmarks, garment, alpha, shading=0.0)
    done = time.perf_counter()
    baseline = naive_paste(erased, template.landmarks, garment, alpha)
    ssim, psnr = region_scores(ours, real, truth)
    b_ssim, b_psnr = region_scores(baseline, real, truth)
    return {
        "person": person_name, "garment": cloth_name, "ssim": ssim, "psnr": psnr,
        "baseline_ssim": b_ssim, "baseline_psnr": b_psnr,
        "prepare_s": prepared - start, "compose_s": done - composed,
        "images": (erased, garment, ours, real, baseline),
    }  # fmt: skip


def contact_sheet(rows: list[tuple[np.ndarray, ...]], cell: tuple[int, int] = (144, 192)) -> np.ndarray:
    """One row per pair: the person with their garment removed, the garment, ours, the real
    photo, the baseline."""
    cw, ch = cell
    tiles = [np.concatenate([cv2.resize(x, (cw, ch), interpolation=cv2.INTER_AREA) for x in row], axis=1) for row in rows]
    return np.concatenate(tiles, axis=0)


def evaluate(root: Path, pairs_file: Path, pose_model, limit: int | None = None, on_error=None) -> tuple[dict, list]:
    """Scores every pair; returns the summary and the per-pair rows (with their images)."""
    pairs = read_pairs(pairs_file)[:limit] if limit else read_pairs(pairs_file)
    rows, failed = [], []
    for person_name, cloth_name in pairs:
        try:
            rows.append(compose_pair(Path(root), person_name, cloth_name, pose_model))
        except PermanentError as exc:
            failed.append({"person": person_name, "garment": cloth_name, "error": str(exc)})
            if on_error:
                on_error(person_name, exc)
    if not rows:
        raise PermanentError(f"eval compose: no pair could be composed ({len(failed)} failed)")
    mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    summary = {
        "n": len(rows),
        "ssim": round(mean("ssim"), 4),
        "psnr": round(mean("psnr"), 3),
        "baseline_ssim": round(mean("baseline_ssim"), 4),
        "baseline_psnr": round(mean("baseline_psnr"), 3),
        "sec_per_image": round(mean("compose_s"), 4),
        "prepare_sec_per_template": round(mean("prepare_s"), 4),
        "failed": len(failed),
        "ssim_wins": int(sum(r["ssim"] > r["baseline_ssim"] for r in rows)),
        "psnr_wins": int(sum(r["psnr"] > r["baseline_psnr"] for r in rows)),
    }
    return summary, rows


def eval_compose_command(args) -> int:
    """`studioline eval compose`: progress on stderr, the summary as the last stdout line."""
    import json
    import sys
    from datetime import datetime, timezone

    from studioline.shared.config import get_settings
    from studioline.shared.models.pose import BlazePose
    from studioline.shared.models.store import ModelStore

    settings = get_settings()
    model = BlazePose(ModelStore(settings.models.dir), threads=settings.models.intra_op_threads)
    try:
        model.load()
        summary, rows = evaluate(
            args.root, args.pairs, model, args.limit,
            on_error=lambda name, exc: print(f"skipped {name}: {exc}", file=sys.stderr),
        )  # fmt: skip
    except (OSError, PermanentError) as exc:
        print(f"studioline eval compose: {exc}", file=sys.stderr)
        return 1
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), contact_sheet([r["images"] for r in rows[:SHEET_PAIRS]])[..., ::-1])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        stamped = {**summary, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        args.out.write_text(json.dumps(stamped, indent=1) + "\n")
    if not args.json:
        for r in rows:
            print(f"{r['person']} {r['garment']}  ssim {r['ssim']:.3f} (baseline {r['baseline_ssim']:.3f})  "
                  f"psnr {r['psnr']:.2f} (baseline {r['baseline_psnr']:.2f})")
    print(json.dumps(summary))
    return 0
