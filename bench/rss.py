"""Memory over time: the RSS of each service in server mode while it handles --n images.

Each service runs as `studioline serve <service>` (gRPC only, no Kafka: STUDIOLINE_SERVICE__KAFKA
=false), one after the other so each has the machine, and is fed C1 (VITON) in-shop garment
photos (192x256, real, small enough for 10,000 of them per service on 2 cores) through its gRPC
entry point by two client threads, in turn, with the garment's cloth-mask as the mask (and the
garment with that mask as alpha as the cut-out) where the step takes one. The process's VmRSS is
read from /proc every --every images. Growth is the slope of a least-squares line through the
samples after the first 10% of images (warm-up: allocator pools, lazy imports), per 10,000
images. A run of some services (--services) keeps the other services' figures in rss.json.

A service that has not reached --n images after --max-seconds stops there (on 2 cores the
cropper and the catalog generator handle a few images per second): its growth per 10,000 is
then extrapolated from the images it did handle, and the JSON says so.

    .venv/bin/python bench/rss.py [--n 10000] [--every 250] [--max-seconds 300] [--services segmenter]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, data_set, machine, now_iso, photos, plt, rss_mb, update_summary, write_json  # noqa: E402
from studioline.shared import steps  # noqa: E402

# Inputs the bench can give a step besides the photo: a ground-truth mask and a cut-out made from it.
MADE_INPUTS = ("mask", "cutout")
WARMUP_SHARE = 0.1


def requests_for(service: str, n_photos: int) -> list:
    from studioline.v1 import steps_pb2

    c1 = data_set("C1_viton_tryon_256")
    out = []
    for path in photos(c1 / "cloth", n_photos, seed=6):
        mask = cv2.imread(str(c1 / "cloth-mask" / path.name), cv2.IMREAD_GRAYSCALE)
        kind = next((k for k in steps.spec(service).inputs if k in MADE_INPUTS), None)
        if kind == "cutout" and mask.min() > 0:
            continue  # nothing transparent: not a cut-out (decoding drops an all-opaque alpha)
        image = path.read_bytes()
        request = steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=image))
        if kind:
            if kind == "mask":
                data = cv2.imencode(".png", mask)[1].tobytes()
            else:
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                data = cv2.imencode(".png", np.dstack([bgr, mask]))[1].tobytes()
            request.inputs[kind].CopyFrom(steps_pb2.ImageInput(data=data))
        out.append(request)
    return out


def growth_per_10k(images: list[int], rss: list[float]) -> float | None:
    pts = [(i, r) for i, r in zip(images, rss) if i >= WARMUP_SHARE * images[-1]]
    if len(pts) < 3:
        return None
    x, y = np.array(pts, float).T
    return float(np.polyfit(x, y, 1)[0] * 10_000)


def measure(service: str, n: int, every: int, n_photos: int, max_seconds: float, log_dir: Path) -> dict:
    import grpc

    from studioline.shared.client import step_call
    from studioline.shared.launcher import ServiceProcesses

    requests = requests_for(service, n_photos)
    env = {"STUDIOLINE_SERVICE__KAFKA": "false", "STUDIOLINE_LOG_LEVEL": "WARNING",
           "STUDIOLINE_GRPC__INSECURE": "true", "STUDIOLINE_GRPC__BIND_ADDRESS": "127.0.0.1"}
    with ServiceProcesses(env, log_dir, services=(service,)) as procs:
        procs.wait_until_serving(timeout_s=600)
        proc, port = procs.procs[service]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
        call = step_call(channel, service)
        counter = iter(range(n))
        lock = threading.Lock()
        samples_i, samples_rss = [0], [rss_mb(proc.pid)]
        done = [0]
        # Slow steps do not reach many multiples of `every`: sample on time as well.
        sample_period_s, last_sample = max_seconds / 40, [time.perf_counter()]
        errors: list[str] = []

        def client() -> None:
            for i in counter:
                if time.perf_counter() - start > max_seconds:
                    break
                try:
                    call(requests[i % len(requests)], timeout=120)
                except grpc.RpcError as exc:
                    errors.append(f"{exc.code()}: {exc.details()}")
                with lock:
                    done[0] += 1
                    if done[0] % every == 0 or time.perf_counter() - last_sample[0] > sample_period_s:
                        samples_i.append(done[0])
                        samples_rss.append(rss_mb(proc.pid))
                        last_sample[0] = time.perf_counter()

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if samples_i[-1] != done[0]:
            samples_i.append(done[0])
            samples_rss.append(rss_mb(proc.pid))
        channel.close()
    growth = growth_per_10k(samples_i, samples_rss)
    return {
        "images": done[0],
        "failed_requests": len(errors),
        "failures": sorted(set(errors))[:5],
        "stopped_by_time_limit": done[0] < n,
        "seconds": round(elapsed, 1),
        "images_per_s": round(done[0] / elapsed, 2),
        "rss_mb_start": round(samples_rss[0], 1),
        "rss_mb_end": round(samples_rss[-1], 1),
        "rss_mb_max": round(max(samples_rss), 1),
        "rss_growth_mb_per_10k": None if growth is None else round(growth, 2),
        "samples": {"images": samples_i, "rss_mb": [round(r, 1) for r in samples_rss]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="images per service (default 10,000)")
    ap.add_argument("--every", type=int, default=250, help="RSS sample interval in images")
    ap.add_argument("--max-seconds", type=float, default=300,
                    help="stop a service's run after this long (slow steps: growth is then extrapolated)")
    ap.add_argument("--photos", type=int, default=263, help="distinct C1 garment photos cycled through")
    ap.add_argument("--services", default=",".join(steps.names()))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-summary", action="store_true", help="do not touch summary.json (smoke runs)")
    args = ap.parse_args(argv)
    services = [s for s in args.services.split(",") if s]
    report = {"machine": machine(), "measured_at": now_iso(), "photos": "C1 VITON garments, 192x256, via gRPC",
              "warmup_share_excluded": WARMUP_SHARE, "services": {}}
    previous = args.out / "rss.json"
    if previous.exists():  # a run of some services keeps the others' earlier figures
        kept = json.loads(previous.read_text()).get("services", {})
        report["services"] = {k: v for k, v in kept.items() if k not in services}
    with tempfile.TemporaryDirectory(prefix="studioline-rss-") as tmp:
        for service in services:
            result = measure(service, args.n, args.every, args.photos, args.max_seconds, Path(tmp))
            result["measured_at"] = now_iso()
            report["services"][service] = result
            print(f"{service:18s} {result['images']} images in {result['seconds']} s: RSS {result['rss_mb_start']} -> "
                  f"{result['rss_mb_end']} MB, growth {result['rss_growth_mb_per_10k']} MB/10k", flush=True)
    growths = [r["rss_growth_mb_per_10k"] for r in report["services"].values() if r["rss_growth_mb_per_10k"] is not None]
    report["rss_growth_mb_per_10k_worst"] = max(growths) if growths else None
    write_json(args.out / "rss.json", report)
    failed = {k: r["failed_requests"] for k, r in report["services"].items() if r.get("failed_requests")}
    if failed:
        print(f"requests failed: {failed} (see rss.json)", file=sys.stderr)
    plot(report, args.out / "rss.png")
    if not args.no_summary:
        update_summary(args.out, rss_growth_mb_per_10k=report["rss_growth_mb_per_10k_worst"])
    return 1 if failed else 0


def plot(report: dict, path: Path) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(9, 4.5))
    for service, r in report["services"].items():
        ax.plot(r["samples"]["images"], r["samples"]["rss_mb"], marker=".",
                label=f"{service} ({r['rss_growth_mb_per_10k']} MB/10k)")
    ax.set_xlabel("images handled (gRPC)")
    ax.set_ylabel("RSS, MB")
    ax.set_title("RSS of each service in server mode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
