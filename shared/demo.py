"""`make demo`: the whole line on real photos, on this machine.

Starts an embedded Kafka-protocol broker and S3 endpoint on loopback (unless
STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS / STUDIOLINE_S3__ENDPOINT name real ones), the six services
as separate processes, publishes one event per photo, follows the results with a progress bar,
and writes an HTML contact sheet and a JSON summary to the output folder.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tqdm import tqdm

from studioline.shared import steps
from studioline.shared.config import PROJECT_ROOT, Settings
from studioline.shared.client import Submitter, collect_results, image_files, init_infrastructure
from studioline.shared.embedded import EmbeddedKafka, EmbeddedS3
from studioline.shared.launcher import ServiceProcesses
from studioline.shared.storage import Storage

DEMO_IMAGES = PROJECT_ROOT / "demo" / "images"
SKIMAGE_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")


def run_demo(folder: Path | None, out: Path, timeout_s: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        env = stack.enter_context(_infrastructure(out))
        os.environ.update(env)  # the demo's own clients see what the services see
        settings = Settings()
        init_infrastructure(settings)
        if folder is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="studioline-demo-")))
            photos = [*image_files(DEMO_IMAGES), *_skimage_samples(tmp)]
        else:
            photos = image_files(folder)
        if not photos:
            print(f"no images found in {folder}", file=sys.stderr)
            return 1
        services = stack.enter_context(ServiceProcesses(env, out / "logs"))
        print(f"waiting for {len(steps.names())} services to load their models ...")
        services.wait_until_serving(timeout_s=300)

        submitter = Submitter(settings)
        start = time.monotonic()
        jobs = {}
        for path in photos:
            bucket, key = submitter.upload(path, key=f"demo/{path.name}")
            jobs[submitter.publish(bucket, key).job_id] = path
        submitter.flush()
        submitter.close()
        with tqdm(total=len(jobs), desc="images", unit="img") as bar:
            done, dead, _ = collect_results(settings, set(jobs), timeout_s, on_result=lambda _: bar.update())
        elapsed = time.monotonic() - start
        summary = _write_contact_sheet(settings, jobs, done, dead, elapsed, out)
    print(json.dumps(summary, indent=2))
    print(f"contact sheet: {out.resolve() / 'index.html'}")
    return 0 if len(done) == len(jobs) else 1


@contextmanager
def _infrastructure(out: Path) -> Iterator[dict[str, str]]:
    """Real endpoints from the environment, or embedded ones on loopback."""
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if k.startswith("STUDIOLINE_")}
        if "STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS" not in env:
            kafka = stack.enter_context(EmbeddedKafka(log_file=out / "logs" / "broker.log"))
            env["STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS"] = kafka.bootstrap
            print(f"embedded Kafka-protocol broker (Tansu) on {kafka.bootstrap}")
        if "STUDIOLINE_S3__ENDPOINT" not in env:
            s3 = stack.enter_context(EmbeddedS3())
            env.update(
                STUDIOLINE_S3__ENDPOINT=s3.endpoint,
                STUDIOLINE_S3__ACCESS_KEY=s3.access_key,
                STUDIOLINE_S3__SECRET_KEY=s3.secret_key,
                STUDIOLINE_S3__SECURE="false",  # the embedded endpoint speaks plain HTTP on loopback
            )
            print(f"embedded S3 endpoint (moto) on {s3.endpoint}")
        # Short group timeouts: joins take seconds instead of tens of seconds on a fresh broker.
        env.setdefault("STUDIOLINE_KAFKA__MAX_POLL_INTERVAL_MS", "60000")
        env.setdefault("STUDIOLINE_KAFKA__SESSION_TIMEOUT_MS", "3000")
        env.setdefault("STUDIOLINE_KAFKA__HEARTBEAT_INTERVAL_MS", "500")
        env.setdefault("STUDIOLINE_KAFKA__MAX_BATCH", "4")
        # The demo's services talk on loopback only: plain-text gRPC, said so, bound to 127.0.0.1.
        env.setdefault("STUDIOLINE_GRPC__INSECURE", "true")
        env.setdefault("STUDIOLINE_GRPC__BIND_ADDRESS", "127.0.0.1")
        yield env


def _skimage_samples(folder: Path) -> list[Path]:
    import skimage.data
    from PIL import Image

    paths = []
    for name in SKIMAGE_SAMPLES:
        path = folder / f"skimage-{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        paths.append(path)
    return paths


def _write_contact_sheet(settings, jobs, done, dead, elapsed, out: Path) -> dict:
    storage = Storage(settings.s3)
    media = out / "media"
    shutil.rmtree(media, ignore_errors=True)
    media.mkdir()
    rows = []
    step_ms: dict[str, list[float]] = {}
    per_type: Counter = Counter()
    per_chain: Counter = Counter()
    for job_id, path in jobs.items():
        stem = f"{len(rows):03d}-{path.stem}"
        original = media / f"{stem}-original{path.suffix.lower()}"
        shutil.copyfile(path, original)
        cells = [_figure(original, out, "original")]
        if job_id in done:
            job = done[job_id]
            per_type[job.classification.image_type] += 1
            per_chain[job.slip.chain] += 1
            for t in job.timings:
                step_ms.setdefault(t.step, []).append(t.ms)
            for i, art in enumerate(job.artifacts):
                ext = art.ref.key.rsplit(".", 1)[-1]
                target = media / f"{stem}-{i}-{art.kind}.{ext}"
                target.write_bytes(storage.get(art.ref.bucket, art.ref.key))
                label = art.kind + "".join(f" {v}" for v in dict(art.params).values())
                cells.append(_figure(target, out, label))
            c = job.classification
            meta = (
                f"<b>{html.escape(c.image_type)}</b> ({c.confidence:.2f}){' &middot; needs review' if c.needs_review else ''}"
                f"<br>chain <b>{html.escape(job.slip.chain)}</b>: {' &rarr; '.join(s.step for s in job.slip.steps) or '-'}"
                f"<br>{' &middot; '.join(f'{t.step} {t.ms:.0f} ms' for t in job.timings)}"
            )
        elif job_id in dead:
            letter = dead[job_id]
            meta = f"<b>dead-lettered</b> at {letter.step}: {html.escape(letter.reason)}"
        else:
            meta = "<b>no result before the time-out</b>"
        rows.append(f"<tr><td class=meta>{html.escape(path.name)}<br>{meta}</td><td>{''.join(cells)}</td></tr>")
    summary = {
        "images": len(jobs),
        "done": len(done),
        "dead_lettered": len(dead),
        "seconds": round(elapsed, 1),
        "images_per_second": round(len(done) / elapsed, 3) if elapsed else None,
        "median_step_ms": {s: round(statistics.median(v), 1) for s, v in sorted(step_ms.items())},
        "images_per_type": dict(per_type),
        "images_per_chain": dict(per_chain),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "index.html").write_text(_PAGE.format(
        summary=html.escape(json.dumps(summary, indent=2)), rows="\n".join(rows)
    ))
    return summary


def _figure(path: Path, out: Path, label: str) -> str:
    rel = path.relative_to(out).as_posix()
    return f'<figure><a href="{rel}"><img src="{rel}" loading="lazy"></a><figcaption>{html.escape(label)}</figcaption></figure>'


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Studioline demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
td {{ border-top: 1px solid #ddd; padding: 8px; vertical-align: top; }}
td.meta {{ width: 22em; font-size: 13px; }}
figure {{ display: inline-block; margin: 0 6px 6px 0; text-align: center; }}
figure img {{ height: 160px; background: repeating-conic-gradient(#ccc 0 25%, #fff 0 50%) 0 0 / 16px 16px; }}
figcaption {{ font-size: 11px; color: #555; }}
pre {{ background: #f6f6f6; padding: 1em; display: inline-block; }}
</style></head><body>
<h1>Studioline demo: before and after</h1>
<pre>{summary}</pre>
<table>{rows}</table>
</body></html>
"""
