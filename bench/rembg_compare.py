"""Studioline's segmenter against rembg (PyPI), side by side in one run, on the SAME u2net.onnx
file and the same photos with ground truth: images per second and IoU for both.

rembg runs offline: $U2NET_HOME points at a folder holding our model store's u2net.onnx (the file
rembg expects, md5-checked by rembg itself), and the session is made with new_session("u2net").
Both sides get decoded images (rembg a PIL image, Studioline a numpy array) and return a mask;
decoding is not timed. Layouts, each started after load and warm-up behind a barrier:

- rembg, as its users run it: one process, onnxruntime's default threads (all cores);
- rembg in 2 processes of 1 thread each (the layout Studioline uses, to show what it is worth);
- Studioline's SegmenterStep(model=u2net, hole filling as the routing table has it: off for people), 1 process with 2 onnxruntime threads;
- Studioline's SegmenterStep(model=u2net), 2 processes with 1 thread each (2 replicas per node).

Photos: C1 in-shop garments on white (ground truth: cloth-mask, thresholded at 128) and B2
street-fashion persons (ground truth: the derived person mask), seeded samples.

    .venv/bin/python bench/rembg_compare.py [--n 24] [--repeats 1] [--model u2net]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS,
    data_set,
    machine,
    now_iso,
    photos,
    plt,
    read_rgb,
    run_workers,
    update_summary,
    write_json,
)

LAYOUTS = {
    "rembg_1proc": ("rembg", 1),
    "rembg_2proc": ("rembg", 2),
    "ours_1proc": ("ours", 1),
    "ours_2proc": ("ours", 2),
}


def pairs(n: int) -> list[tuple[Path, Path, str]]:
    """(photo, ground-truth mask, set) for n C1 garments and n B2 persons."""
    c1 = data_set("C1_viton_tryon_256")
    b2 = data_set("B2_ccp_street_fashion_parsing")
    out = [(p, c1 / "cloth-mask" / p.name, "C1_cloth") for p in photos(c1 / "cloth", n, seed=3)]
    out += [(p, b2 / "foreground_mask_derived" / f"{p.stem}.png", "B2_person") for p in photos(b2 / "photos", n, seed=3)]
    for _, gt, _ in out:
        if not gt.exists():
            raise SystemExit(f"ground truth missing: {gt}")
    return out


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    a, b = mask >= 128, truth >= 128
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _rembg_engine(model: str, threads: int, model_dir: str):
    os.environ["U2NET_HOME"] = model_dir
    import onnxruntime as ort
    from PIL import Image
    from rembg import new_session, remove

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = new_session(model, sess_opts=opts, providers=["CPUExecutionProvider"])

    def segment(rgb: np.ndarray, kind: str) -> np.ndarray:
        return np.asarray(remove(Image.fromarray(rgb), session=session, only_mask=True))

    return segment


def _ours_engine(model: str, threads: int):
    from studioline.shared.config import Settings
    from studioline.shared.models.store import ModelStore
    from studioline.shared import steps
    from studioline.shared.step import StepInput

    settings = Settings(models={"intra_op_threads": threads, "device": "cpu"})
    step = steps.spec("segmenter").step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    # The clean-up the routing table gives each kind of photo, on the same model: people keep
    # the gaps between arms and body (no hole filling), products get their holes filled.
    params = {kind: step.spec.parse_params({"model": model, "fill_holes": kind != "B2_person"})
              for kind in ("C1_cloth", "B2_person")}

    def segment(rgb: np.ndarray, kind: str) -> np.ndarray:
        (result,) = step.run_batch([StepInput(image=rgb, params=params[kind])])
        if isinstance(result, Exception):
            raise result
        return result.images[0].pixels

    return segment


def _worker(engine, model, threads, model_dir, jobs, barrier, results):
    segment = _rembg_engine(model, threads, model_dir) if engine == "rembg" else _ours_engine(model, threads)
    images = [(read_rgb(Path(p)), cv2.imread(gt, cv2.IMREAD_GRAYSCALE), name) for p, gt, name in jobs]
    segment(images[0][0], images[0][2])  # warm-up
    barrier.wait()
    start = time.perf_counter()
    masks = [segment(rgb, name) for rgb, _, name in images]
    wall = time.perf_counter() - start
    scores = [(name, iou(m, gt)) for m, (_, gt, name) in zip(masks, images)]
    results.put({"wall_s": wall, "scores": scores})


def run_layout(engine: str, model: str, workers: int, jobs: list, model_dir: str) -> dict:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    # One process gets rembg's default (0: onnxruntime picks, all cores) or our 2 threads.
    threads = (0 if engine == "rembg" else 2) if workers == 1 else 1
    worker_args = [(engine, model, threads, model_dir, [tuple(map(str, j[:2])) + (j[2],) for j in jobs[w::workers]],
                    barrier, results) for w in range(workers)]
    out = run_workers(ctx, _worker, worker_args, results, engine)
    scores = [s for r in out for s in r["scores"]]
    return {"images_per_s": len(jobs) / max(r["wall_s"] for r in out), "scores": scores}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24, help="photos per set (C1 garments, B2 persons); default 24")
    ap.add_argument("--model", choices=("u2net", "u2netp"), default="u2net", help="u2netp: the quick smoke run")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all layouts (median taken)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-summary", action="store_true", help="do not touch summary.json (smoke runs)")
    args = ap.parse_args(argv)
    from studioline.shared.config import Settings

    jobs = pairs(args.n)
    runs: dict[str, list[dict]] = {k: [] for k in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="studioline-u2net-home-") as home:
        os.symlink(Settings().models.dir / f"{args.model}.onnx", Path(home) / f"{args.model}.onnx")
        for _ in range(args.repeats):
            for name, (engine, workers) in LAYOUTS.items():
                run = run_layout(engine, args.model, workers, jobs, home)
                runs[name].append(run)
                print(f"{name:12s} {run['images_per_s']:.3f} img/s  IoU {statistics.mean(s for _, s in run['scores']):.4f}",
                      flush=True)
    layouts = {}
    for name, rs in runs.items():
        scores = rs[0]["scores"]
        per_set = {}
        for set_name in sorted({s for s, _ in scores}):
            per_set[set_name] = round(statistics.mean(v for s, v in scores if s == set_name), 4)
        layouts[name] = {
            "images_per_s": round(statistics.median(r["images_per_s"] for r in rs), 3),
            "images_per_s_runs": [round(r["images_per_s"], 3) for r in rs],
            "iou_mean": round(statistics.mean(v for _, v in scores), 4),
            "iou_per_set": per_set,
        }
    best_ours = max(("ours_1proc", "ours_2proc"), key=lambda k: layouts[k]["images_per_s"])
    rembg = layouts["rembg_1proc"]
    report = {
        "machine": machine(),
        "measured_at": now_iso(),
        "model": f"{args.model}.onnx from our model store, the same file for both",
        "images": {"C1_cloth": args.n, "B2_person": args.n},
        "repeats": args.repeats,
        "layouts": layouts,
        "ours_best_layout": best_ours,
        "throughput_ratio_vs_rembg_default": round(layouts[best_ours]["images_per_s"] / rembg["images_per_s"], 3),
        "throughput_ratio_same_layout_1proc": round(layouts["ours_1proc"]["images_per_s"] / rembg["images_per_s"], 3),
        "throughput_ratio_same_layout_2proc": round(
            layouts["ours_2proc"]["images_per_s"] / layouts["rembg_2proc"]["images_per_s"], 3),
    }
    write_json(args.out / "rembg_compare.json", report)
    plot(report, args.out / "rembg_compare.png")
    if not args.no_summary and args.model == "u2net":
        update_summary(
            args.out,
            rembg_cpu_throughput_ratio=report["throughput_ratio_vs_rembg_default"],
            iou_ours=layouts[best_ours]["iou_mean"],
            iou_rembg=rembg["iou_mean"],
        )
    return 0


def plot(report: dict, path: Path) -> None:
    pyplot = plt()
    names = list(report["layouts"])
    fig, axes = pyplot.subplots(1, 2, figsize=(11, 3.8))
    colours = ["#999" if n.startswith("rembg") else "#2a7" for n in names]
    axes[0].barh(names, [report["layouts"][n]["images_per_s"] for n in names], color=colours)
    axes[0].set_xlabel(f"images/s ({report['model'].split('.')[0]}, CPU)")
    sets = list(next(iter(report["layouts"].values()))["iou_per_set"])
    y = np.arange(len(names))
    for i, s in enumerate(sets):
        axes[1].barh(y + (i - 0.5) * 0.4, [report["layouts"][n]["iou_per_set"][s] for n in names], 0.38, label=s)
    axes[1].set_yticks(y, names)
    axes[1].set_xlim(0.5, 1)
    axes[1].set_xlabel("IoU vs ground truth")
    axes[1].legend(fontsize=8, loc="lower left")
    for ax in axes:
        ax.invert_yaxis()
    fig.suptitle(f"Studioline vs rembg on the same u2net.onnx: {report['throughput_ratio_vs_rembg_default']}x "
                 f"rembg's default throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
