"""Per-step cost on this machine: latency per image (median, p99) at 1024 px and at the C2
high-res photos' native size, throughput with 1 and 2 worker processes, peak memory.

Each configuration runs in fresh worker processes (spawned) that load the step exactly as a
service does (Settings, the model store, load, warmup) and time `step.run_batch([item])` per
image; decoding and resizing happen outside the timed part. With 1 worker the step gets both
onnxruntime threads; with 2 workers each gets one thread and half the images, started together
(a barrier after warm-up). Peak memory is the worker's RSS high-water mark (VmHWM).

Inputs a step consumes are made once beforehand by the real steps: the segmenter's mask
(auto) for matting, inpainter and cropper-with-mask; the cut-out for the catalog generator is the
photo with that mask as alpha (matting's own output would cost a matting run per image here).

    .venv/bin/python bench/steps.py [--n 8] [--steps segmenter,matting] [--sizes 1024,native]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEMO_IMAGES,
    RESULTS,
    data_set,
    fit_long_side,
    latency_stats,
    machine,
    now_iso,
    peak_rss_mb,
    photos,
    plt,
    read_rgb,
    run_workers,
    write_json,
)
from studioline.shared import steps  # noqa: E402

# Steps measured in more than one configuration (label suffix -> parameters); the others run with
# their defaults.
VARIANTS = {"segmenter": {name: {"model": name} for name in ("auto", "u2netp", "u2net", "classical")}}
# (label, step, params): every step of the step table.
CONFIGS = [
    (f"{name}[{label}]" if name in VARIANTS else name, name, params)
    for name in steps.names()
    for label, params in VARIANTS.get(name, {"": {}}).items()
]
# Inputs the bench can give a step besides the photo: the segmenter's mask and a cut-out made from it.
MADE_INPUTS = ("mask", "cutout")


def step_inputs(name: str) -> tuple[str, ...]:
    return tuple(k for k in steps.spec(name).inputs if k in MADE_INPUTS)


def photo_sets(n: int, sizes: list[str]) -> dict[str, list[Path]]:
    """1024: a mix of C2, C3 and demo photos (C1's are 256 px); native: C2 photos as they are."""
    sets = {}
    if "1024" in sizes:
        pool = [photos(data_set("C2_tryon_examples_hd"), n, seed=1), photos(data_set("C3_clothing_flatlay_cc0"), n, seed=1),
                photos(DEMO_IMAGES, n, seed=1)]
        sets["1024"] = [p for i in range(n) for p in (pool[i % 3][i // 3],)][:n]
    if "native" in sizes:
        sets["native"] = photos(data_set("C2_tryon_examples_hd"), n, seed=2)
    return sets


def load_image(path: Path, size: str) -> np.ndarray:
    image = read_rgb(path)
    return fit_long_side(image, 1024) if size == "1024" else image


def make_masks(paths: list[Path], size: str, folder: Path) -> list[Path]:
    """The segmenter's auto mask for each photo, saved as PNG for the workers."""
    from studioline.shared.config import Settings
    from studioline.shared.models.store import ModelStore
    from studioline.shared.step import StepInput

    settings = Settings()
    segmenter = steps.spec("segmenter").step_class()(settings, ModelStore(settings.models.dir))
    segmenter.load()
    out = []
    for i, path in enumerate(paths):
        image = load_image(path, size)
        (result,) = segmenter.run_batch([StepInput(image=image, params=segmenter.spec.params())])
        if isinstance(result, Exception):
            raise result
        target = folder / f"{size}-{i}.png"
        cv2.imwrite(str(target), result.images[0].pixels)
        out.append(target)
    segmenter.close()
    return out


def _worker(step_name, params, jobs, size, threads, barrier, results):
    """One worker process: load the step as a service does, wait for the others, run the jobs."""
    from studioline.shared.config import Settings
    from studioline.shared.models.store import ModelStore
    from studioline.shared.step import StepInput

    settings = Settings(models={"intra_op_threads": threads, "device": "cpu"})
    step = steps.spec(step_name).step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    step.warmup()
    parsed = step.spec.parse_params(params)
    barrier.wait()
    latencies = []
    start = time.perf_counter()
    for path, mask_path in jobs:
        image = load_image(Path(path), size)
        inputs = {}
        if mask_path:
            mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
            wanted = step_inputs(step_name)
            if "mask" in wanted:
                inputs["mask"] = mask
            if "cutout" in wanted:
                inputs["cutout"] = np.dstack([image, mask])
        item = StepInput(image=image, params=parsed, inputs=inputs)
        t = time.perf_counter()
        (result,) = step.run_batch([item])
        latencies.append(time.perf_counter() - t)
        if isinstance(result, Exception):
            raise result
    compute = sum(latencies)
    results.put({"latencies": latencies, "compute_s": compute, "wall_s": time.perf_counter() - start,
                 "peak_rss_mb": round(peak_rss_mb(), 1)})
    step.close()


def run_config(step_name: str, params: dict, jobs: list[tuple[str, str]], size: str, workers: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    threads = max(2 // workers, 1)
    worker_args = [(step_name, params, jobs[w::workers], size, threads, barrier, results) for w in range(workers)]
    return run_workers(ctx, _worker, worker_args, results, step_name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="photos per size (default 8)")
    ap.add_argument("--steps", default="", help="comma-separated labels or step names (default: all)")
    ap.add_argument("--sizes", default="1024,native")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    wanted = [s for s in args.steps.split(",") if s]
    configs = [c for c in CONFIGS if not wanted or c[0] in wanted or c[1] in wanted]
    sizes = [s for s in args.sizes.split(",") if s]
    sets = photo_sets(args.n, sizes)
    report = {"machine": machine(), "measured_at": now_iso(), "n_per_size": args.n, "steps": {}}
    with tempfile.TemporaryDirectory(prefix="studioline-bench-") as tmp:
        masks = {size: make_masks(paths, size, Path(tmp)) for size, paths in sets.items()}
        for label, step_name, params in configs:
            report["steps"][label] = {"params": params}
            for size, paths in sets.items():
                jobs = [(str(p), str(m) if step_inputs(step_name) else "") for p, m in zip(paths, masks[size])]
                one = run_config(step_name, params, jobs, size, workers=1)[0]
                two = run_config(step_name, params, jobs, size, workers=2)
                entry = {
                    **latency_stats(one["latencies"]),
                    "images_per_s_1_worker": round(len(jobs) / one["compute_s"], 3),
                    "images_per_s_2_workers": round(len(jobs) / max(r["wall_s"] for r in two), 3),
                    "peak_rss_mb": one["peak_rss_mb"],
                    "peak_rss_mb_per_worker_2_workers": max(r["peak_rss_mb"] for r in two),
                }
                report["steps"][label][size] = entry
                print(f"{label:22s} {size:>6s}: median {entry['median_ms']:8.1f} ms  p99 {entry['p99_ms']:8.1f} ms  "
                      f"{entry['images_per_s_1_worker']:.2f} / {entry['images_per_s_2_workers']:.2f} img/s (1/2 workers)  "
                      f"peak {entry['peak_rss_mb']:.0f} MB", flush=True)
    report["sizes"] = {
        "1024": "long side resized to 1024 px (C2, C3 and demo photos in turn)",
        "native": "C2 high-res photos at their own size (768x1024 to 2048x2732)",
    }
    write_json(args.out / "steps.json", report)
    plot(report, args.out / "steps.png")
    return 0


def plot(report: dict, path: Path) -> None:
    pyplot = plt()
    labels = list(report["steps"])
    sizes = [s for s in ("1024", "native") if any(s in report["steps"][k] for k in labels)]
    fig, axes = pyplot.subplots(1, 2, figsize=(13, 0.45 * len(labels) + 2))
    y = np.arange(len(labels))
    for i, size in enumerate(sizes):
        off = (i - (len(sizes) - 1) / 2) * 0.38
        med = [report["steps"][k].get(size, {}).get("median_ms", 0) for k in labels]
        p99 = [report["steps"][k].get(size, {}).get("p99_ms", 0) for k in labels]
        axes[0].barh(y + off, med, 0.36, label=f"{size} median")
        axes[0].scatter(p99, y + off, marker="|", color="k", s=80, label="p99" if i == 0 else None)
        thr1 = [report["steps"][k].get(size, {}).get("images_per_s_1_worker", 0) for k in labels]
        thr2 = [report["steps"][k].get(size, {}).get("images_per_s_2_workers", 0) for k in labels]
        axes[1].barh(y + off, thr2, 0.36, alpha=0.45, label=f"{size}, 2 workers")
        axes[1].scatter(thr1, y + off, marker="o", s=20, label=f"{size}, 1 worker")
    for ax in axes:
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.legend(fontsize=8)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("ms per image (log)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("images/s (log)")
    fig.suptitle(f"Studioline steps on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
                 f"{report['n_per_size']} photos per size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
