"""Cut-out quality on every set of ../shared/data with ground truth, as `make eval` runs it.

Segmentation sets (IoU at alpha 0.5, boundary F with 2 px tolerance, MAE, seconds per image):
C1 garments on white (cloth/ vs cloth-mask/), C1 on-model photos (image/ vs image-parse/, any
parsing label is the person), B2 street persons (photos/ vs foreground_mask_derived/), B1 ECSSD
natural scenes. Each runs with `routed` (the segmenter parameters the routing table plans for the
set's image type; for ECSSD, which has no fashion type, those of the fallback chain)
and with each network alone (u2netp, u2net, and isnet when its opt-in pack is in the store).
Matting sets: A_alphamatting_lowres with Trimap1 and Trimap2 (SAD / 1000, MSE x 1000, gradient,
connectivity in the unknown region) through the matting step's solver.

Writes the figures to bench/results/quality.json (committed) and a page of the 20 worst images
per set (image, ground truth, result, error map) to out/quality/index.html: the sets are research
data whose terms forbid copying them, thumbnails included, into the repository, so the page and
its thumbnails stay under out/ (git-ignored).

    .venv/bin/python bench/quality.py [--sets c1_cloth,b2] [--methods routed,u2netp] [--every 4]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
THUMB_SIDE = 256
WORST = 20


@dataclass(frozen=True)
class SegmentSet:
    key: str
    title: str
    images: str
    masks: str
    mask_threshold: int
    image_type: str | None  # None: not a fashion photo; the fallback chain's segmenter
    target: dict


SEGMENT_SETS = (
    SegmentSet("c1_cloth", "C1 garments on white vs cloth-mask", "C1_viton_tryon_256/cloth",
               "C1_viton_tryon_256/cloth-mask", 128, "product_on_white", {"iou": 0.98, "boundary_f": 0.95}),
    SegmentSet("c1_on_model", "C1 on-model photos vs person parsing", "C1_viton_tryon_256/image",
               "C1_viton_tryon_256/image-parse", 1, "on_model_studio", {"iou": 0.93, "boundary_f": 0.80}),
    SegmentSet("b2_street", "B2 street-fashion persons", "B2_ccp_street_fashion_parsing/photos",
               "B2_ccp_street_fashion_parsing/foreground_mask_derived", 128, "lifestyle_on_model_street",
               {"iou": 0.965, "boundary_f": 0.88}),
    SegmentSet("b1_ecssd", "B1 ECSSD natural scenes", "B1_ecssd_salient_subset/images",
               "B1_ecssd_salient_subset/ground_truth_mask", 128, None, {"iou": 0.92}),
)
MATTE_SETS = {
    "a_trimap1": ("A alphamatting.com, Trimap1", "Trimap1", {"sad": 4.7}),
    "a_trimap2": ("A alphamatting.com, Trimap2", "Trimap2", {"sad": 6.5}),
}
NETWORKS = ("u2netp", "u2net", "isnet")


def evaluate_segment_set(s: SegmentSet, method: str, every: int, save_dir: Path, settings) -> dict:
    from studioline.services.segmenter import evaluate

    images, masks = SHARED_DATA / s.images, SHARED_DATA / s.masks
    pairs, _ = evaluate.pair_files(images, masks)
    stems = [stem for stem, _, _ in pairs[::every]]
    if method != "routed":
        kwargs = {"params": {"model": method}}
    elif s.image_type:
        kwargs = {"image_type": s.image_type}
    else:  # no fashion type: the segmenter as the fallback chain (the steps safe for any photo) plans it
        from studioline.shared.routing import Router

        router = Router.from_settings(settings)
        kwargs = {"params": evaluate.chain_params(router, router.fallback_chain)}
    return evaluate.evaluate_segment(
        images, masks, mask_threshold=s.mask_threshold, stems=stems, save_dir=save_dir, settings=settings, **kwargs
    )


def evaluate_matte_set(trimap_folder: str, every: int, save_dir: Path) -> dict:
    """The matting step's solver through its evaluate module, or its CLI where that is missing."""
    base = SHARED_DATA / "A_alphamatting_lowres"
    images, trimaps, alphas = (base / "input_training_lowres", base / "trimap_training_lowres" / trimap_folder,
                               base / "gt_training_lowres")
    if every > 1:  # a subset: link every n-th stem into a temporary folder triple
        images, trimaps, alphas = _subset((images, trimaps, alphas), every, save_dir.parent / "subset")
    try:
        from studioline.services.matting.evaluate import evaluate_matte
    except ImportError:
        import subprocess

        cmd = [str(ROOT / ".venv" / "bin" / "studioline"), "eval", "matte", "--images", str(images), "--trimaps",
               str(trimaps), "--alphas", str(alphas), "--save", str(save_dir), "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    return evaluate_matte(images, trimaps, alphas, save_dir=save_dir)


def _subset(folders: tuple[Path, ...], every: int, dest: Path) -> tuple[Path, ...]:
    stems = sorted(p.stem for p in folders[0].iterdir())[::every]
    out = []
    for i, folder in enumerate(folders):
        target = dest / str(i)
        target.mkdir(parents=True, exist_ok=True)
        for p in folder.iterdir():
            if p.stem in stems and not (target / p.name).exists():
                (target / p.name).symlink_to(p)
        out.append(target)
    return tuple(out)


# ---- the report page -----------------------------------------------------------------------


def _thumb(pixels: np.ndarray, path: Path) -> str:
    h, w = pixels.shape[:2]
    scale = min(1.0, THUMB_SIDE / max(h, w))
    small = cv2.resize(pixels, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path.name


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im if im.mode == "P" else im.convert("L"))


def mask_error_map(result: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """BGR: grey where right, red where the result added background, blue where it lost foreground."""
    pred = result >= 128
    out = np.where(truth[..., None], np.uint8(170), np.uint8(40)) * np.ones(3, np.uint8)
    out[pred & ~truth] = (0, 0, 255)
    out[~pred & truth] = (255, 80, 0)
    return out


def worst_rows_segment(s: SegmentSet, report: dict, result_dir: Path, thumbs: Path) -> list[str]:
    from studioline.services.segmenter.evaluate import read_truth

    images = {p.stem: p for p in (SHARED_DATA / s.images).iterdir()}
    masks = {p.stem: p for p in (SHARED_DATA / s.masks).iterdir()}
    rows = []
    for r in sorted(report["images"], key=lambda r: r["iou"])[:WORST]:
        name = r["name"]
        image = cv2.imread(str(images[name]))
        truth = read_truth(masks[name], s.mask_threshold)
        result = cv2.imread(str(result_dir / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        cells = [
            _thumb(image, thumbs / f"{s.key}_{name}_image.jpg"),
            _thumb(truth.astype(np.uint8) * 255, thumbs / f"{s.key}_{name}_truth.jpg"),
            _thumb(result, thumbs / f"{s.key}_{name}_result.jpg"),
            _thumb(mask_error_map(result, truth), thumbs / f"{s.key}_{name}_error.jpg"),
        ]
        caption = (f"{html.escape(name)}: IoU {r['iou']:.3f}, boundary F {r['boundary_f']:.3f}, "
                   f"path {html.escape(str(r.get('path')))}, quality {r.get('quality', '-')}")
        rows.append(_row(caption, cells))
    return rows


def worst_rows_matte(key: str, trimap_folder: str, report: dict, result_dir: Path, thumbs: Path) -> list[str]:
    base = SHARED_DATA / "A_alphamatting_lowres"
    rows = []
    for r in sorted(report["images"], key=lambda r: -r["sad"])[:WORST]:
        name = r["name"]
        image = cv2.imread(str(base / "input_training_lowres" / f"{name}.png"))
        truth = _read_gray(base / "gt_training_lowres" / f"{name}.png")
        result = cv2.imread(str(result_dir / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        error = cv2.applyColorMap(np.abs(result.astype(np.int16) - truth).astype(np.uint8), cv2.COLORMAP_INFERNO)
        cells = [
            _thumb(image, thumbs / f"{key}_{name}_image.jpg"),
            _thumb(truth, thumbs / f"{key}_{name}_truth.jpg"),
            _thumb(result, thumbs / f"{key}_{name}_result.jpg"),
            _thumb(error, thumbs / f"{key}_{name}_error.jpg"),
        ]
        rows.append(_row(f"{html.escape(name)} ({trimap_folder}): SAD {r['sad']:.2f}, MSE {r['mse']:.2f}", cells))
    return rows


def _row(caption: str, cells: list[str]) -> str:
    imgs = "".join(f'<img src="thumbs/{c}" loading="lazy">' for c in cells)
    return f"<div class=row><p>{caption}</p>{imgs}</div>"


def write_section(path: Path, title: str, rows: list[str]) -> None:
    path.write_text(f"<h2>{html.escape(title)}</h2>\n" + "\n".join(rows) + "\n")


def write_page(path: Path, sections: Path, results: dict) -> None:
    """The index: the figures, then every set's section written so far (runs with --merge add to it)."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>Studioline cut-out quality: the worst images</title>",
        "<style>body{font:14px sans-serif;margin:1em}img{margin:2px;max-width:256px}"
        ".row p{margin:.6em 0 .2em}pre{background:#f4f4f4;padding:.5em}</style>",
        f"<h1>Cut-out quality: the {WORST} worst images per set</h1>",
        "<p>Columns: image, ground truth, result, error (segmentation: red = background kept, blue = "
        "foreground lost; matting: |alpha error|). Figures: bench/results/quality.json, measured at "
        f"{html.escape(results['measured_at'])}.</p>",
        f"<pre>{html.escape(format_table(results))}</pre>",
    ]
    keys = [s.key for s in SEGMENT_SETS] + list(MATTE_SETS)
    parts.extend((sections / f"{key}.html").read_text() for key in keys if (sections / f"{key}.html").is_file())
    path.write_text("\n".join(parts) + "\n")


def format_table(results: dict) -> str:
    lines = [f"{'set':<14}{'method':<9}{'n':>5}{'IoU':>8}{'BF':>8}{'MAE':>8}{'SAD':>8}{'MSE':>8}{'s/img':>8}"]
    for key, entry in results["sets"].items():
        for method, m in entry["methods"].items():
            def f(k: str) -> str:
                v = m.get(k)
                return f"{v:>8.3f}" if isinstance(v, (int, float)) else f"{'':>8}"

            lines.append(f"{key:<14}{method:<9}{m['n']:>5}{f('iou')}{f('boundary_f')}{f('mae')}{f('sad')}{f('mse')}"
                         f"{f('sec_per_image')}")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------

SUMMARY_KEYS = ("every", "n", "iou", "iou_median", "boundary_f", "mae", "sec_per_image", "paths", "sad", "mse", "grad",
                "conn", "method", "escalated", "needs_review")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join([s.key for s in SEGMENT_SETS] + list(MATTE_SETS)))
    ap.add_argument("--methods", default="routed," + ",".join(NETWORKS),
                    help="segmentation methods: routed and/or network names (isnet skipped without its pack)")
    ap.add_argument("--every", type=int, default=1, help="take every n-th image (a subset, while iterating)")
    ap.add_argument("--network-every", type=int, default=1,
                    help="for the u2net and isnet columns only: every n-th image of that subset (they are slow)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    ap.add_argument("--report", type=Path, default=ROOT / "out" / "quality")
    ap.add_argument("--merge", action="store_true",
                    help="update the sets and methods run now in an existing --out file instead of replacing it")
    args = ap.parse_args(argv)
    if not SHARED_DATA.is_dir():
        print(f"quality eval skipped: {SHARED_DATA} not found")
        return 0

    from studioline.shared.config import get_settings
    from studioline.shared.models.packs import PACKS, pack_is_present

    settings = get_settings()
    wanted = set(args.sets.split(","))
    methods = [m for m in args.methods.split(",") if m]
    if "isnet" in methods and not pack_is_present(PACKS["isnet"], settings.models.dir):
        print("isnet left out: its opt-in pack is not in the model store (studioline models fetch isnet)")
        methods.remove("isnet")
    thumbs = args.report / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    results: dict = {"measured_at": "", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                    "processor": platform.processor() or platform.machine()},
                     "every": args.every, "sets": {}}
    if args.merge and args.out.is_file():
        results["sets"] = json.loads(args.out.read_text())["sets"]
    sections = args.report / "sections"
    sections.mkdir(exist_ok=True)
    for s in SEGMENT_SETS:
        if s.key not in wanted or not (SHARED_DATA / s.images).is_dir():
            continue
        entry = results["sets"].get(s.key) or {"title": s.title, "image_type": s.image_type or "none (fallback chain)",
                                               "target": s.target, "methods": {}}
        for method in methods:
            print(f"== {s.title}: {method}", flush=True)
            result_dir = args.report / "results" / s.key / method
            every = args.every * (args.network_every if method in ("u2net", "isnet") else 1)
            report = evaluate_segment_set(s, method, every, result_dir, settings)
            report["every"] = every
            report["escalated"] = sum(1 for r in report["images"] if r.get("escalated"))
            report["needs_review"] = sum(1 for r in report["images"] if r.get("needs_review"))
            entry["methods"][method] = {k: report[k] for k in SUMMARY_KEYS if k in report}
            print(json.dumps(entry["methods"][method]), flush=True)
            if method == "routed":
                write_section(sections / f"{s.key}.html", f"{s.title} ({method})",
                              worst_rows_segment(s, report, result_dir, thumbs))
        results["sets"][s.key] = entry
    for key, (title, folder, target) in MATTE_SETS.items():
        if key not in wanted or not (SHARED_DATA / "A_alphamatting_lowres").is_dir():
            continue
        print(f"== {title}", flush=True)
        result_dir = args.report / "results" / key
        report = evaluate_matte_set(folder, args.every, result_dir)
        method = report.get("method", "matting")
        results["sets"][key] = {"title": title, "target": target,
                                "methods": {method: {k: report[k] for k in SUMMARY_KEYS if k in report}}}
        print(json.dumps(results["sets"][key]["methods"][method]), flush=True)
        if "images" in report:
            write_section(sections / f"{key}.html", title, worst_rows_matte(key, folder, report, result_dir, thumbs))
    results["measured_at"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    write_page(args.report / "index.html", sections, results)
    print(format_table(results))
    print(f"wrote {args.out} and {args.report / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
