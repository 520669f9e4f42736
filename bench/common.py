"""What the benchmark scripts share: the photo sets, statistics, memory readings, result files."""

from __future__ import annotations

import json
import os
import platform
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
DEMO_IMAGES = ROOT / "demo" / "images"
SUMMARY_KEYS = (
    "rembg_cpu_throughput_ratio",
    "iou_ours",
    "iou_rembg",
    "pipeline_overhead_fraction",
    "rss_growth_mb_per_10k",
    "gpu_service_vs_raw_ratio",
    "gpu_raw_images_per_s",
    "gpu_service_images_per_s",
    "gpu_name",
    "measured_at",
)


def data_set(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        raise SystemExit(f"{path} not found: this benchmark needs the evaluation photos (../shared/data)")
    return path


def photos(folder: Path, n: int | None = None, seed: int = 0) -> list[Path]:
    """JPEG/PNG files under folder, a seeded sample of n when n is given."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if n is not None and n < len(paths):
        paths = sorted(random.Random(seed).sample(paths, n))
    return paths


def mixed_photos(n: int, seed: int = 0) -> list[Path]:
    """A seeded mix of real product photos: C2 (high-res studio), C1 (on-model and on-white),
    C3 (phone flat-lays) and the committed demo photos, in turn."""
    sets = [
        photos(data_set("C2_tryon_examples_hd")),
        photos(data_set("C1_viton_tryon_256") / "cloth") + photos(data_set("C1_viton_tryon_256") / "image"),
        photos(data_set("C3_clothing_flatlay_cc0")),
        photos(DEMO_IMAGES),
    ]
    rng = random.Random(seed)
    for s in sets:
        rng.shuffle(s)
    mixed = [s[i] for i in range(max(map(len, sets))) for s in sets if i < len(s)]
    return mixed[:n]


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def fit_long_side(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale == 1:
        return image
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=interp)


def latency_stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, float) * 1000
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's RSS high-water mark."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def machine() -> dict:
    import onnxruntime as ort

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_workers(ctx, target, worker_args: list[tuple], results, what: str, timeout_s: float = 3600) -> list:
    """Starts one `ctx` process per args tuple, each putting one result on `results` (a ctx
    Queue); returns the results once every worker has exited cleanly."""
    procs = [ctx.Process(target=target, args=args) for args in worker_args]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=timeout_s) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f"{what} worker exited with {proc.exitcode}")
    return out


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def update_summary(out_dir: Path, **values) -> None:
    """Sets some of summary.json's keys (the rest stay as the other benchmarks left them)."""
    unknown = set(values) - set(SUMMARY_KEYS)
    if unknown:
        raise KeyError(f"not summary keys: {sorted(unknown)}")
    path = out_dir / "summary.json"
    summary = dict.fromkeys(SUMMARY_KEYS)
    if path.exists():
        summary.update({k: v for k, v in json.loads(path.read_text()).items() if k in SUMMARY_KEYS})
    summary.update(values, measured_at=now_iso())
    write_json(path, summary)


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot
