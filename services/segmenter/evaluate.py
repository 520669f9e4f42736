"""Scores the segmenter against ground-truth masks: `studioline eval segment`.

Images and masks are paired by file name stem (any image extension). A mask pixel at or above
`mask_threshold` is foreground; palette PNGs (human parsing maps) are read as their label
indices, so `mask_threshold=1` makes any label foreground. Per image: IoU of the result at alpha
0.5, the boundary F-measure with a 2-pixel tolerance (precision and recall of the 1-pixel
boundaries, each matched within 2 px of the other's), the mean absolute error of the soft alpha
against the 0/1 truth, and the step's time after decoding. The report gives their means over
the images, the median seconds per image, and the per-image records.

Without explicit parameters the segmenter runs as the router would plan it: the segmenter
parameters of the chain the routing table gives `image_type`, or, without a type, the chain for
the type the classifier finds for each image (the fallback chain below its confidence threshold).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from studioline.shared.errors import PermanentError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
BOUNDARY_TOLERANCE = 2


# ---- metrics -------------------------------------------------------------------------------


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's own pixels that touch the background (4-neighbourhood); the frame is not an edge."""
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), borderType=cv2.BORDER_REPLICATE)
    return (m > 0) & (inner == 0)


def _within(edges: np.ndarray, other: np.ndarray, tol: float) -> float:
    """Share of `edges` pixels lying within `tol` pixels (Euclidean) of an `other` pixel."""
    dist = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float((dist[edges] <= tol).mean())


def boundary_f(pred: np.ndarray, truth: np.ndarray, tol: float = BOUNDARY_TOLERANCE) -> float:
    """Boundary F-measure (as in DAVIS): harmonic mean of boundary precision and recall within `tol` px."""
    pb, tb = boundary(pred), boundary(truth)
    if not pb.any() and not tb.any():
        return 1.0
    if not pb.any() or not tb.any():
        return 0.0
    precision, recall = _within(pb, tb, tol), _within(tb, pb, tol)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def mae(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error of a uint8 soft alpha against a boolean truth, on a 0..1 scale."""
    return float(np.abs(alpha.astype(np.float32) * (1.0 / 255.0) - truth.astype(np.float32)).mean())


def score(alpha: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU at alpha 0.5, boundary F (2 px) and MAE of one uint8 alpha against its boolean truth."""
    pred = alpha >= 128
    return {"iou": iou(pred, truth), "boundary_f": boundary_f(pred, truth), "mae": mae(alpha, truth)}


# ---- files ---------------------------------------------------------------------------------


def _by_stem(folder: Path) -> dict[str, Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return {p.stem: p for p in files}


def pair_files(images_dir: Path, masks_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(stem, image, mask) for every image with a mask of the same stem; and the stems without one."""
    for folder in (images_dir, masks_dir):
        if not Path(folder).is_dir():
            raise ValueError(f"{folder} is not a folder")
    images, masks = _by_stem(images_dir), _by_stem(masks_dir)
    pairs = [(stem, path, masks[stem]) for stem, path in images.items() if stem in masks]
    return pairs, [stem for stem in images if stem not in masks]


def read_truth(path: Path, threshold: int) -> np.ndarray:
    """A ground-truth mask as booleans: palette images by label index, others by luma (alpha if any)."""
    with Image.open(path) as im:
        if im.mode == "P":
            values = np.asarray(im)
        elif im.mode in ("RGBA", "LA"):
            values = np.asarray(im.getchannel("A"))
        else:
            values = np.asarray(im.convert("L"))
    return values >= threshold


# ---- running the step ----------------------------------------------------------------------


def chain_params(router, chain: str) -> dict[str, Any]:
    """The segmenter parameters the routing table plans in `chain` ({} when the chain has none)."""
    for planned in router.table.chains[chain]:
        if planned.step == "segmenter":
            return dict(planned.params)
    return {}


def evaluate_segment(
    images_dir: Path,
    masks_dir: Path,
    *,
    mask_threshold: int = 128,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    image_type: str | None = None,
    save_dir: Path | None = None,
    stems: list[str] | None = None,
    settings=None,
    step=None,
    on_skip: Callable[[str, str], None] | None = None,
) -> dict:
    """The report for one folder pair (see the module doc); loads the segmenter unless given one.

    `params` (SegmenterParams fields) fixes the segmenter's parameters for every image; without
    them the router decides (see the module doc). `model` replaces the model in whichever parameters
    apply (the routed ones of `image_type` when given). `stems` keeps only those images.
    """
    from studioline.services.segmenter.step import SegmenterStep
    from studioline.shared.config import get_settings
    from studioline.shared.imageio import decode_image
    from studioline.shared.models.store import ModelStore
    from studioline.shared.routing import Router
    from studioline.shared.step import StepInput

    if not 0 <= mask_threshold <= 255:
        raise ValueError(f"mask threshold must be 0..255, got {mask_threshold}")
    settings = settings or get_settings()
    pairs, unmatched = pair_files(Path(images_dir), Path(masks_dir))
    if stems is not None:
        wanted = set(stems)
        pairs = [p for p in pairs if p[0] in wanted]
    router = None if params is not None else Router.from_settings(settings)
    if params is None and image_type:
        if image_type not in router.table.types:
            raise ValueError(f"unknown image type {image_type!r}; the routing table has {', '.join(router.table.types)}")
        params = chain_params(router, router.decide(image_type, 1.0).chain)
    if model:
        params = {**(params or {}), "model": model}
    fixed = None if params is None else SegmenterStep.spec.parse_params(params)
    store = ModelStore(settings.models.dir)
    own_step = step is None
    if own_step:
        step = SegmenterStep(settings, store)
        step.load()
        step.warmup()
    classifier = None
    if fixed is None:
        from studioline.services.classifier.params import ClassifierParams
        from studioline.services.classifier.step import ClassifierStep

        classifier = ClassifierStep(settings, store)
        classifier.load()
        classify_params = ClassifierParams(include_cues=False)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def skip(name: str, reason: str) -> None:
        skipped.append({"name": name, "reason": reason})
        if on_skip is not None:
            on_skip(name, reason)

    try:
        for stem, image_path, mask_path in pairs:
            try:
                image = decode_image(image_path.read_bytes(), settings.limits).pixels
                truth = read_truth(mask_path, mask_threshold)
            except (OSError, PermanentError) as exc:
                skip(stem, f"cannot read: {exc}")
                continue
            if truth.shape != image.shape[:2]:
                skip(stem, f"mask is {truth.shape[1]}x{truth.shape[0]}, image {image.shape[1]}x{image.shape[0]}")
                continue
            seg_params, found_type = fixed, image_type
            if seg_params is None:
                info = classifier.run(StepInput(image=image, params=classify_params)).info
                found_type = info["image_type"]
                chain = router.decide(found_type, info["confidence"]).chain
                seg_params = SegmenterStep.spec.parse_params(chain_params(router, chain))
            start = time.perf_counter()
            out = step.run_batch([StepInput(image=image, params=seg_params)])[0]
            sec = time.perf_counter() - start
            if isinstance(out, Exception):
                skip(stem, f"segmenter failed: {out}")
                continue
            alpha = out.images[0].pixels
            if save_dir is not None:
                cv2.imwrite(str(Path(save_dir) / f"{stem}.png"), alpha)
            record = {"name": stem, **score(alpha, truth), "sec": sec, "path": out.info.get("path"),
                      "quality": out.quality}
            if "escalated" in out.info:
                record["escalated"] = out.info["escalated"]
            if out.needs_review:
                record["needs_review"] = True
            if found_type:
                record["type"] = found_type
            records.append(record)
    finally:
        if own_step:
            step.close()
        if classifier is not None:
            classifier.close()
    return summarise(records, unmatched=unmatched, skipped=skipped)


def summarise(records: list[dict[str, Any]], *, unmatched: list[str] = (), skipped: list[dict] = ()) -> dict:
    """Means over the per-image records, the median time, and the records themselves."""
    report: dict[str, Any] = {"n": len(records)}
    if records:
        for key in ("iou", "boundary_f", "mae"):
            report[key] = round(statistics.fmean(r[key] for r in records), 5)
        report["iou_median"] = round(statistics.median(r["iou"] for r in records), 5)
        report["sec_per_image"] = round(statistics.median(r["sec"] for r in records), 4)
        paths: dict[str, int] = {}
        for r in records:
            paths[str(r.get("path"))] = paths.get(str(r.get("path")), 0) + 1
        report["paths"] = paths
    report["without_mask"] = len(unmatched)
    report["skipped"] = list(skipped)
    report["images"] = records
    return report


def format_table(report: dict) -> str:
    if not report["n"]:
        return "no image could be scored"
    return (
        f"images {report['n']}  IoU {report['iou']:.4f} (median {report['iou_median']:.4f})  "
        f"boundary F {report['boundary_f']:.4f}  MAE {report['mae']:.4f}  "
        f"{report['sec_per_image']:.3f} s/image  paths {report['paths']}"
    )
