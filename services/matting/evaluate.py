"""Scores the alpha solver against ground-truth mattes: `studioline eval matte`.

Images, trimaps and alphas are matched by file stem (any image extension). Each image's alpha is
solved from its trimap as the service solves it, and compared with the ground truth inside the
trimap's unknown region in the units of the alphamatting.com benchmark (Rhemann et al., CVPR
2009) as the common evaluation code (Deep Image Matting's MATLAB scripts and their Python ports)
computes them, alphas on [0, 1]:

- SAD: sum of absolute differences / 1000;
- MSE: mean squared difference x 1000;
- gradient: sum of squared differences of the gradient magnitudes (first derivatives of a
  Gaussian, sigma 1.4) / 1000;
- connectivity: sum of |phi(pred) - phi(gt)| (threshold step 0.1, 4-connected largest common
  component, the 0.15 tolerance) / 1000.

Each image is timed from its decoded arrays to the alpha; `sec_per_image` is the median wall
time, `cpu_sec_per_image` the median process CPU time (all threads; steadier than wall time
on a loaded machine).
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from studioline.services.matting import ops
from studioline.services.matting.params import MattingParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GRADIENT_SIGMA = 1.4
CONNECTIVITY_STEP = 0.1


def _by_stem(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    return (trimap != 0) & (trimap != 255)


def sad(alpha: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    return float(np.abs(alpha - gt)[region].sum() / 1000.0)


def mse(alpha: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    return float(((alpha - gt)[region] ** 2).mean() * 1000.0) if region.any() else 0.0


def _gaussian_gradient(image: np.ndarray, sigma: float = GRADIENT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's gaussgradient: a 2-D kernel of a Gaussian times its derivative, truncated
    where the Gaussian falls below 1% of its peak scale and normalised to unit L2 norm."""
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2.0 * np.pi) * sigma * 1e-2))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    hx = np.outer(gauss, -u * gauss / sigma**2)
    hx /= np.sqrt((hx**2).sum())
    return ndimage.convolve(image, hx, mode="nearest"), ndimage.convolve(image, hx.T, mode="nearest")


def gradient_error(alpha: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    ax, ay = _gaussian_gradient(alpha)
    gx, gy = _gaussian_gradient(gt)
    err = (np.hypot(ax, ay) - np.hypot(gx, gy)) ** 2
    return float(err[region].sum() / 1000.0)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros(binary.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def connectivity_error(alpha: np.ndarray, gt: np.ndarray, region: np.ndarray, step: float = CONNECTIVITY_STEP) -> float:
    """Pixels lose connectivity at the threshold (level l) where they drop out of the largest
    component both mattes share; only their alpha above l + 0.15 counts against them."""
    thresholds = np.linspace(0.0, 1.0, round(1.0 / step) + 1)
    level = np.full(alpha.shape, -1.0)
    for previous, t in zip(thresholds[:-1], thresholds[1:], strict=True):
        omega = _largest_component((alpha >= t) & (gt >= t))
        level[(level == -1.0) & ~omega] = previous
    level[level == -1.0] = 1.0
    d_alpha, d_gt = alpha - level, gt - level
    phi_alpha = 1.0 - d_alpha * (d_alpha >= 0.15)
    phi_gt = 1.0 - d_gt * (d_gt >= 0.15)
    return float(np.abs(phi_alpha - phi_gt)[region].sum() / 1000.0)


def matte_errors(alpha: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """SAD, MSE, gradient and connectivity errors of an alpha (HxW, [0, 1]) in the trimap's unknown region."""
    alpha, gt = alpha.astype(np.float64), gt.astype(np.float64)
    region = unknown_region(trimap)
    return {
        "sad": sad(alpha, gt, region),
        "mse": mse(alpha, gt, region),
        "grad": gradient_error(alpha, gt, region),
        "conn": connectivity_error(alpha, gt, region),
    }


def evaluate_matte(
    images_dir: Path,
    trimaps_dir: Path,
    alphas_dir: Path,
    *,
    method: str | None = None,
    solve_pixels: int | None = None,
    save_dir: Path | None = None,
) -> dict:
    """Solve every image that has a trimap and a ground-truth alpha; means of the errors, the
    median seconds per image, per-image records (worst last is the caller's to sort) and the
    stems skipped (no counterpart, unreadable, sizes that differ) with the reason."""
    given = {"method": method, "solve_pixels": solve_pixels}
    params = MattingParams(**{k: v for k, v in given.items() if v is not None})
    images, trimaps, alphas = _by_stem(images_dir), _by_stem(trimaps_dir), _by_stem(alphas_dir)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    records, skipped = [], []
    for stem, image_path in images.items():
        if stem not in trimaps or stem not in alphas:
            skipped.append({"name": stem, "reason": "no trimap" if stem not in trimaps else "no ground-truth alpha"})
            continue
        try:
            image = _read(image_path, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
            trimap = _read(trimaps[stem], cv2.IMREAD_GRAYSCALE)
            gt = _read(alphas[stem], cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255.0
            if not (image.shape[:2] == trimap.shape == gt.shape):
                raise ValueError(f"sizes differ: image {image.shape[:2]}, trimap {trimap.shape}, alpha {gt.shape}")
        except ValueError as exc:
            skipped.append({"name": stem, "reason": str(exc)})
            continue
        start, cpu_start = time.perf_counter(), time.process_time()
        alpha = ops.estimate_alpha(image, trimap, **params.solver())
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        records.append({"name": stem, **matte_errors(alpha, gt, trimap), "sec": seconds, "cpu_sec": cpu_seconds})
        if save_dir is not None:
            cv2.imwrite(str(Path(save_dir) / f"{stem}.png"), np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8))
    n = len(records)
    report = {"n": n, "method": params.method, "solve_pixels": params.solve_pixels}
    for key in ("sad", "mse", "grad", "conn"):
        report[key] = round(float(np.mean([r[key] for r in records])), 4) if n else None
    report["sec_per_image"] = round(statistics.median(r["sec"] for r in records), 4) if n else None
    report["cpu_sec_per_image"] = round(statistics.median(r["cpu_sec"] for r in records), 4) if n else None
    report["images"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in records]
    report["skipped"] = skipped
    return report


def with_timestamp(report: dict) -> dict:
    return {**report, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def format_table(report: dict) -> str:
    lines = [f"{'image':<16}{'SAD':>9}{'MSE':>9}{'grad':>9}{'conn':>9}{'sec':>8}"]
    for r in report["images"]:
        lines.append(f"{r['name']:<16}{r['sad']:>9.3f}{r['mse']:>9.3f}{r['grad']:>9.3f}{r['conn']:>9.3f}{r['sec']:>8.2f}")
    for s in report["skipped"]:
        lines.append(f"{s['name']:<16} skipped: {s['reason']}")
    if report["n"]:
        lines.append(
            f"{'mean (n=' + str(report['n']) + ')':<16}{report['sad']:>9.3f}{report['mse']:>9.3f}"
            f"{report['grad']:>9.3f}{report['conn']:>9.3f}{report['sec_per_image']:>8.2f} (median)"
        )
    return "\n".join(lines)
