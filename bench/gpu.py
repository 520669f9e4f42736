"""The segmenter's model on the accelerator, in one run: the raw model's own throughput and the
service's throughput through its real entry points.

1. raw: a bare onnxruntime loop over the model (u2net by default, its batch axis made dynamic
   on load), one preprocessed batch of real photos fed again and again, at each batch size in
   --batch-sizes; the best is the raw figure.
2. service, batcher: the real SegmenterStep(model=u2net) behind the service's dynamic batcher
   (shared/runtime.py StepRunner, max_batch_size = the raw best batch), fed decoded photos at
   1024 px from several threads, as the Kafka loop and gRPC calls feed it. Includes the step's
   pre-processing (resize to 320, normalise), the model, and post-processing at full size.
3. service, gRPC: the same behind the real gRPC server, --clients threads sending JPEG bytes
   inline (adds decoding, PNG encoding of the mask and the RPC).

Runs unchanged on the CPU (CPUExecutionProvider, small batches): the smoke test does that.
gpu.json always; the gpu_* keys of summary.json only when the model ran on a GPU.

    .venv/bin/python bench/gpu.py [--model u2net] [--batch-sizes 1,2,4,8,16,32] [--images 512]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEMO_IMAGES,
    RESULTS,
    SHARED_DATA,
    fit_long_side,
    machine,
    now_iso,
    photos,
    plt,
    read_rgb,
    update_summary,
    write_json,
)

TARGET_RATIO = 0.70


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def source_photos(n: int) -> list[Path]:
    """C2 high-res photos where ../shared/data is here, else the committed demo photos."""
    folder = SHARED_DATA / "C2_tryon_examples_hd"
    return photos(folder if folder.is_dir() else DEMO_IMAGES, n, seed=7)


def raw_throughput(model, images: list[np.ndarray], batch_sizes: list[int], seconds: float) -> dict:
    """images/s of session.run alone at each batch size (inputs already preprocessed)."""
    tensors = [model.preprocess(im) for im in images]
    results = {}
    for bs in batch_sizes:
        if bs > 1 and not model.dynamic_batch:
            continue
        batch = np.stack([tensors[i % len(tensors)] for i in range(bs)])
        model.session.run(None, {model.input_name: batch})  # first run at a shape builds its kernels
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            model.session.run(None, {model.input_name: batch})
            runs += 1
        results[bs] = round(bs * runs / (time.perf_counter() - start), 2)
        print(f"raw batch {bs:3d}: {results[bs]:9.2f} images/s", flush=True)
    return results


def decode_throughput(jpegs: list[bytes], device: str, seconds: float) -> tuple[float, str]:
    """JPEG decoding in batches of 32: on the GPU (torchvision) where it loads, else OpenCV."""
    from studioline.shared.models.device import decode_jpegs

    batch = [jpegs[i % len(jpegs)] for i in range(32)]
    first = decode_jpegs(batch, device)
    decoder = "opencv (cpu)" if isinstance(first[0], np.ndarray) else "torchvision.io.decode_jpeg (cuda)"
    runs, start = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - start < seconds:
        out = decode_jpegs(batch, device)
        runs += 1
    if not isinstance(out[0], np.ndarray):
        import torch

        torch.cuda.synchronize()
    return len(batch) * runs / (time.perf_counter() - start), decoder


def batcher_throughput(runner, params, images: list[np.ndarray], n: int, feeders: int) -> float:
    from studioline.shared.step import StepInput

    items = [StepInput(image=images[i % len(images)], params=params) for i in range(n)]

    def feed(share):  # a Kafka poll's worth at a time, as the worker hands them over
        for b in range(0, len(share), 8):
            for result in runner.run(share[b:b + 8], source="kafka")[0]:
                if isinstance(result, Exception):
                    raise result

    start = time.perf_counter()
    with ThreadPoolExecutor(feeders) as pool:
        list(pool.map(feed, [items[w::feeders] for w in range(feeders)]))
    return n / (time.perf_counter() - start)


def grpc_throughput(runner, settings, jpegs: list[bytes], model: str, n: int, clients: int) -> float:
    import grpc

    from studioline.shared.client import step_call
    from studioline.shared.runtime import dict_to_struct
    from studioline.shared.grpc_server import GrpcServer
    from studioline.v1 import steps_pb2

    server = GrpcServer(runner, settings, None, None, 0)
    server.start()
    server.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    segment = step_call(channel, runner.step.spec.name)
    requests = [steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=j), params=dict_to_struct({"model": model}))
                for j in jpegs]
    counter, lock = iter(range(n)), threading.Lock()

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            segment(requests[i % len(requests)], timeout=300)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    channel.close()
    server.stop(0)
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("u2net", "u2netp"), default="u2net")
    ap.add_argument("--batch-sizes", default="", help="default 1,2,4,8,16,32 on a GPU, 1,2 on the CPU")
    ap.add_argument("--seconds", type=float, default=10, help="per raw batch size")
    ap.add_argument("--images", type=int, default=0, help="per service phase (default 512 on a GPU, 8 on the CPU)")
    ap.add_argument("--photos", type=int, default=32, help="distinct photos, decoded once and cycled")
    ap.add_argument("--clients", type=int, default=16, help="gRPC client threads")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-summary", action="store_true", help="do not touch summary.json (smoke runs)")
    args = ap.parse_args(argv)

    from studioline.shared.config import Settings
    from studioline.shared.models.registry import model_class
    from studioline.shared.models.store import ModelStore
    from studioline.shared.runtime import StepRunner
    from studioline.shared import steps

    settings = Settings()
    store = ModelStore(settings.models.dir)
    model = model_class(args.model)(store, device=settings.models.device, threads=settings.models.intra_op_threads)
    model.load()
    provider = model.session.get_providers()[0]
    on_gpu = provider != "CPUExecutionProvider"
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,2,4,8,16,32" if on_gpu else "1,2")).split(",")]
    n_images = args.images or (512 if on_gpu else 8)

    paths = source_photos(args.photos)
    images = [fit_long_side(read_rgb(p), 1024) for p in paths]
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
             for im in images]

    decode_ips, decoder = decode_throughput(jpegs, "cuda" if on_gpu else "cpu", args.seconds)
    print(f"JPEG decode ({decoder}): {decode_ips:.1f} images/s", flush=True)
    raw = raw_throughput(model, images, batch_sizes, args.seconds)
    best_bs = max(raw, key=raw.get)
    model.close()

    service_settings = Settings(batching={"max_batch_size": best_bs, "max_queue_delay_ms": 5 if on_gpu else 0},
                                grpc={"insecure": True, "bind_address": "127.0.0.1"})
    step = steps.spec("segmenter").step_class()(service_settings, store)
    step.load()
    step.warmup()
    runner = StepRunner(step)
    feeders = max(2, 2 * best_bs // 8)
    via_batcher = batcher_throughput(runner, step.spec.parse_params({"model": args.model}), images, n_images, feeders)
    print(f"service via the batcher: {via_batcher:.2f} images/s", flush=True)
    via_grpc = grpc_throughput(runner, service_settings, jpegs, args.model, n_images, args.clients)
    print(f"service via gRPC:        {via_grpc:.2f} images/s", flush=True)
    runner.close()
    step.close()

    report = {
        "machine": machine(),
        "measured_at": now_iso(),
        "gpu_name": gpu_name() if on_gpu else None,
        "provider": provider,
        "model": args.model,
        "photos": f"{len(paths)} photos from {paths[0].parent.parent.name if paths else '-'}, long side 1024 px",
        "jpeg_decoder": decoder,
        "jpeg_decode_images_per_s_1024px": round(decode_ips, 1),
        "tensor_pre_post_processing": "torch on cuda" if on_gpu and model.torch_device else "numpy/opencv on the cpu",
        "raw_images_per_s_by_batch": raw,
        "raw_best_batch": best_bs,
        "raw_images_per_s": raw[best_bs],
        "service_images": n_images,
        "service_batcher_images_per_s": round(via_batcher, 2),
        "service_grpc_images_per_s": round(via_grpc, 2),
        "service_vs_raw_ratio": round(via_batcher / raw[best_bs], 3),
        "grpc_vs_raw_ratio": round(via_grpc / raw[best_bs], 3),
        "target_ratio": TARGET_RATIO,
    }
    name = "gpu.json" if on_gpu else "gpu_cpu_fallback.json"
    write_json(args.out / name, report)
    plot(report, args.out / name.replace(".json", ".png"))
    if on_gpu and not args.no_summary:
        update_summary(
            args.out,
            gpu_raw_images_per_s=report["raw_images_per_s"],
            gpu_service_images_per_s=report["service_batcher_images_per_s"],
            gpu_service_vs_raw_ratio=report["service_vs_raw_ratio"],
            gpu_name=report["gpu_name"],
        )
    return 0


def plot(report: dict, path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(11, 3.8))
    raw = report["raw_images_per_s_by_batch"]
    axes[0].plot([int(b) for b in raw], list(raw.values()), marker="o")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("batch size")
    axes[0].set_ylabel("images/s")
    axes[0].set_title(f"raw {report['model']} on {report['gpu_name'] or report['provider']}")
    names = ["raw (best batch)", "service: batcher", "service: gRPC"]
    values = [report["raw_images_per_s"], report["service_batcher_images_per_s"], report["service_grpc_images_per_s"]]
    axes[1].bar(names, values, color=["#999", "#2a7", "#27a"])
    axes[1].axhline(report["raw_images_per_s"] * TARGET_RATIO, color="k", ls="--", lw=1, label="70% of raw")
    axes[1].legend(fontsize=8)
    axes[1].set_ylabel("images/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
