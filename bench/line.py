"""The whole line end to end through Kafka and S3: images per second next to the steps' own
compute, and the pipeline's overhead per hop.

Infrastructure as `make demo` runs it: the embedded Kafka-protocol broker (Tansu) and S3
endpoint (moto) on loopback, the six services as separate processes (shared/launcher.py).

Photos: all 406 of C1 (VITON) in-shop garments on white and on-model photos, 192x256, and B2
street photos (550x830) and the 12 demo flat-lays (400 px wide) to make up the number: small real photos, so 500 of them go through
every step of their real chain in minutes on 2 cores. The classifier routes them (garments:
segmenter, inpainter, matting, cropper, catalog generator; models: segmenter u2netp, matting,
cropper, catalog generator; street: segmenter, matting, saliency cropper), so every service
is exercised.

Phases:
1. paced: `--paced` photos one at a time (the next is published when the previous is done), so
   no queue builds up: a hop's overhead is the job event's `queue_ms` for that step (from the
   previous step's publish to this step's result, minus its compute: Kafka delivery, the poll,
   S3 reads, decoding, the batcher's wait).
2. throughput: `--n` photos published at once; images/s from the first publish to the last
   result.
3. the steps alone: the same jobs' steps replayed in-process on the exact inputs the line gave
   them (the artifacts in S3), in two worker processes (one onnxruntime thread each, the whole
   machine), batches of kafka.max_batch: their images/s is what the line would reach with no
   overhead. pipeline_overhead_fraction = (1 / line images/s) / (1 / steps-alone images/s) - 1.

    .venv/bin/python bench/line.py [--n 500] [--paced 20] [--standalone 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEMO_IMAGES, RESULTS, data_set, machine, now_iso, photos, plt, run_workers, update_summary, write_json  # noqa: E402

TARGET_OVERHEAD = 0.10
# Service and broker logs (git-ignored).
LOG_DIR = Path(__file__).resolve().parent.parent / "out" / "bench" / "line-logs"


def line_photos(n: int) -> list[Path]:
    """Small real photos: C1 (garments and on-model), B2 street photos, the demo photos."""
    c1 = data_set("C1_viton_tryon_256")
    garments, people = photos(c1 / "cloth"), photos(c1 / "image")
    pool = [p for pair in zip(garments, people) for p in pair] + garments[len(people):] + people[len(garments):]
    pool += photos(data_set("B2_ccp_street_fashion_parsing") / "photos") + photos(DEMO_IMAGES)
    if n > len(pool):
        raise SystemExit(f"only {len(pool)} C1, B2 and demo photos; ask for at most that many")
    return sorted(random.Random(4).sample(pool, n))


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    arr = np.asarray(values)
    return {"n": len(values), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1)}


def hop_stats(jobs: list) -> dict:
    per_step: dict[str, list[float]] = {}
    every = []
    for job in jobs:
        for t in job.timings:
            per_step.setdefault(t.step, []).append(t.queue_ms)
            every.append(t.queue_ms)
    return {"all_hops": _percentiles(every), "per_step": {s: _percentiles(v) for s, v in sorted(per_step.items())}}


def compute_ms(jobs: list) -> list[float]:
    """Per image: the sum of its steps' compute as the line recorded it."""
    return [sum(t.ms for t in job.timings) for job in jobs]


def _replay_worker(env: dict, jobs: list[bytes], max_batch: int, results) -> None:
    """Runs each job's steps on the inputs the line gave them, batch by batch; returns seconds."""
    os.environ.update(env)
    from studioline.shared import jobpath, steps
    from studioline.shared.config import Settings
    from studioline.shared.models.store import ModelStore
    from studioline.shared.storage import Storage
    from studioline.v1 import job_pb2

    settings = Settings(models={"intra_op_threads": 1, "device": "cpu"})
    storage = Storage(settings.s3)
    store = ModelStore(settings.models.dir)
    events = [job_pb2.JobEvent.FromString(b) for b in jobs]
    items: dict[str, list] = {}
    for job in events:
        # Each step as the line ran it: the slip up to it, the artifacts of the steps before it.
        for position, planned in enumerate(job.slip.steps):
            spec = steps.spec(planned.step)
            before = {s.step for s in job.slip.steps[:position]}
            partial = job_pb2.JobEvent(source=job.source, slip=job.slip)
            partial.artifacts.extend(a for a in job.artifacts if a.step in before)
            kind, ref, refs = jobpath.reads_for(spec, partial)
            image = jobpath.Blob(storage.get(ref.bucket, ref.key), kind)
            inputs = {k: jobpath.Blob(storage.get(r.bucket, r.key), k) for k, r in refs.items()}
            params = spec.load_params(planned.params_json)
            prepared = jobpath.prepare(spec, params, image, inputs, settings.limits)
            items.setdefault(planned.step, []).append(prepared.item)
    seconds: dict[str, float] = {}
    for name, step_items in items.items():
        step = steps.spec(name).step_class()(settings, store)
        step.load()
        step.warmup()
        start = time.perf_counter()
        for b in range(0, len(step_items), max_batch):
            for result in step.run_batch(step_items[b:b + max_batch]):
                if isinstance(result, Exception):
                    raise result
        seconds[name] = time.perf_counter() - start
        step.close()
    results.put(seconds)


def steps_alone(env: dict, jobs: list, max_batch: int) -> dict:
    """The jobs' steps replayed in two worker processes; each step's images/s, all steps'."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    # The workers time their steps one after the other; the two run side by side, as the
    # line's processes do. A step's share of the machine is its slower worker's time.
    worker_args = [(env, [j.SerializeToString() for j in jobs[w::2]], max_batch, results) for w in range(2)]
    out = run_workers(ctx, _replay_worker, worker_args, results, "replay", timeout_s=7200)
    per_step = {s: max(o.get(s, 0.0) for o in out) for s in set().union(*out)}
    total = sum(per_step.values())
    return {
        "images": len(jobs),
        "seconds_per_step": {s: round(v, 2) for s, v in sorted(per_step.items())},
        "seconds": round(total, 2),
        "images_per_s": round(len(jobs) / total, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="photos in the throughput phase (default 500)")
    ap.add_argument("--paced", type=int, default=20, help="photos sent one at a time first (default 20)")
    ap.add_argument("--standalone", type=int, default=100, help="jobs replayed for the steps-alone figure")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-summary", action="store_true", help="do not touch summary.json (smoke runs)")
    args = ap.parse_args(argv)

    from studioline.shared.client import Submitter, collect_results, init_infrastructure
    from studioline.shared.config import Settings
    from studioline.shared.embedded import EmbeddedKafka, EmbeddedS3
    from studioline.shared.launcher import ServiceProcesses

    # SIGTERM unwinds like an error, so the services, broker and S3 endpoint are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    paths = line_photos(args.n + args.paced)
    log_dir = LOG_DIR
    with ExitStack() as stack:
        kafka = stack.enter_context(EmbeddedKafka(log_file=log_dir / "broker.log"))
        s3 = stack.enter_context(EmbeddedS3())
        env = {
            "STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "STUDIOLINE_S3__ENDPOINT": s3.endpoint,
            "STUDIOLINE_S3__SECURE": "false",
            "STUDIOLINE_S3__ACCESS_KEY": s3.access_key,
            "STUDIOLINE_S3__SECRET_KEY": s3.secret_key,
            "STUDIOLINE_GRPC__INSECURE": "true",
            "STUDIOLINE_GRPC__BIND_ADDRESS": "127.0.0.1",
            "STUDIOLINE_KAFKA__MAX_POLL_INTERVAL_MS": "120000",
            "STUDIOLINE_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "STUDIOLINE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            "STUDIOLINE_KAFKA__MAX_BATCH": "4",
            "STUDIOLINE_LOG_LEVEL": "WARNING",
        }
        env.update({k: v for k, v in os.environ.items() if k.startswith("STUDIOLINE_") and k not in env})
        os.environ.update(env)
        settings = Settings()
        init_infrastructure(settings)
        services = stack.enter_context(ServiceProcesses(env, log_dir))
        services.wait_until_serving(timeout_s=600)
        submitter = Submitter(settings)
        refs = [submitter.upload(p, key=f"bench/{i:05d}-{p.name}") for i, p in enumerate(paths)]

        paced_jobs = []
        for bucket, key in refs[:args.paced]:
            job_id = submitter.publish(bucket, key).job_id
            submitter.flush()
            done, dead, _ = collect_results(settings, {job_id}, args.timeout)
            if job_id in done:
                paced_jobs.append(done[job_id])
            elif job_id not in dead:  # a dead letter is an outcome; silence is not
                raise RuntimeError(f"paced job {key} had no outcome within {args.timeout} s")

        start = time.monotonic()
        job_ids = {submitter.publish(bucket, key).job_id for bucket, key in refs[args.paced:]}
        submitter.flush()
        done, dead, _ = collect_results(settings, job_ids, args.timeout)
        elapsed = time.monotonic() - start
        submitter.close()
        for service in services.procs:  # free the cores for the steps-alone replay
            services.stop(service)

        jobs = list(done.values())
        sample = random.Random(5).sample(jobs, min(args.standalone, len(jobs)))
        alone = steps_alone(env, sample, settings.kafka.max_batch)

    line_ips = len(done) / elapsed
    chains: dict[str, int] = {}
    for job in jobs:
        chains[job.slip.chain] = chains.get(job.slip.chain, 0) + 1
    paced_compute = compute_ms(paced_jobs)
    paced_hops = [t.queue_ms for job in paced_jobs for t in job.timings]
    overhead = (1 / line_ips) / (1 / alone["images_per_s"]) - 1
    report = {
        "machine": machine(),
        "measured_at": now_iso(),
        "photos": "C1 VITON garments on white and on-model photos (192x256), B2 street photos (550x830), demo, "
                  "routed by the classifier",
        "kafka_max_batch": settings.kafka.max_batch,
        "throughput": {
            "images": len(job_ids),
            "done": len(done),
            "dead_lettered": len(dead),
            "dead_letter_reasons": sorted(f"{d.step}: {d.error_code}: {d.reason[:200]}" for d in dead.values()),
            "seconds": round(elapsed, 1),
            "images_per_s": round(line_ips, 3),
            "chains": chains,
            "compute_ms_per_image_as_recorded": _percentiles(compute_ms(jobs)),
            "hop_overhead_ms_incl_backlog": hop_stats(jobs),
        },
        "paced": {
            "images": len(paced_jobs),
            "compute_ms_per_image": _percentiles(paced_compute),
            "hop_overhead_ms": hop_stats(paced_jobs),
            "overhead_fraction_of_compute": round(sum(paced_hops) / sum(paced_compute), 3) if paced_compute else None,
        },
        "steps_alone": alone,
        "pipeline_overhead_fraction": round(overhead, 3),
        "target_overhead_fraction": TARGET_OVERHEAD,
    }
    write_json(args.out / "line.json", report)
    plot(report, args.out / "line.png")
    if not args.no_summary:
        update_summary(args.out, pipeline_overhead_fraction=report["pipeline_overhead_fraction"])
    print(f"line {line_ips:.2f} img/s; steps alone {alone['images_per_s']:.2f} img/s; overhead {overhead:+.1%}; "
          f"paced hop p50 {report['paced']['hop_overhead_ms']['all_hops']['p50_ms']} ms")
    return 0 if len(done) + len(dead) == len(job_ids) else 1  # every job had its outcome


def plot(report: dict, path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4))
    t = report["throughput"]
    axes[0].bar(["line (Kafka + S3)", "steps alone"], [t["images_per_s"], report["steps_alone"]["images_per_s"]],
                color=["#2a7", "#999"])
    axes[0].set_ylabel("images/s")
    axes[0].set_title(f"{t['done']} photos; overhead {report['pipeline_overhead_fraction']:+.0%} "
                      f"(target <= {TARGET_OVERHEAD:.0%})")
    hops = report["paced"]["hop_overhead_ms"]["per_step"]
    names = list(hops)
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, [hops[n]["p50_ms"] for n in names], 0.4, label="p50")
    axes[1].bar(x + 0.2, [hops[n]["p99_ms"] for n in names], 0.4, label="p99")
    axes[1].set_xticks(x, names, rotation=20)
    axes[1].set_ylabel("ms per hop (paced, no backlog)")
    axes[1].legend()
    axes[1].set_title("overhead of the hop into each step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
