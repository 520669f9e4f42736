"""Peak memory of a service's job path under decompression bombs, against its memory budget;
and each step's working-memory factor (StepSpec.memory_factor), measured on a large real photo.

Every case runs in a fresh process (this script re-invoked with --case): the step is loaded and
warmed up as a service does it, the kernel's RSS high-water mark is reset (/proc/self/clear_refs
5), and the input goes through the job path as both front ends run it: jobpath.prepare (decode,
holding the memory budget where the code has one), the step through the batcher, encode_outputs,
release. The peak is VmHWM afterwards; growth is the peak less the RSS before the request. Each
service gets the memory limit the Helm chart gives its container (no cgroup limit here), so its
budget is what it would be in the cluster.

Bomb cases (under `after`, or `--label`, in the JSON):
- rgba16 / grey16: a 7000 x 7000 16-bit PNG (RGBA, 583 KB / greyscale, 107 KB) of one colour, to
  the classifier and the segmenter;
- grey16 x4: four such greyscale PNGs at once to the classifier (four gRPC worker threads);
- catalog 8 canvases: the catalog generator asked for 8 canvases near 8192 x 8192.
`--tree DIR` runs them against another checkout of the project (e.g. `git archive` of the commit
before the budget, unpacked in DIR) for the figures before; they go under `before` in the JSON.

Factors (`--factors`, under `factors` in the JSON): each step on two alphamatting.com photos with
their ground-truth alpha (the mask; the cut-out is the photo with it), enlarged to about 5 and
20 MP, with the inputs a routed job carries and the step's default parameters:
memory_factor = (peak growth - the decoder's own Pillow buffers) / the bytes of the 8-bit arrays
the step is handed and writes, as jobpath.memory_estimate counts them; the step's is the largest
at 20 MP (at 5 MP its fixed overhead, which the budget's headroom carries, weighs more). The
catalog generator's canvases get their own factor from one 4096 x 4096 canvas.

    .venv/bin/python bench/memory_bombs.py [--factors] [--tree DIR --label before] [--cases ...]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, data_set, machine, now_iso, write_json  # noqa: E402

BOMB_SIDE = 7000
CASES = {
    # name: (service, bomb, concurrent requests)
    "classifier/rgba16": ("classifier", "rgba16", 1),
    "classifier/grey16": ("classifier", "grey16", 1),
    "classifier/grey16x4": ("classifier", "grey16", 4),
    "segmenter/rgba16": ("segmenter", "rgba16", 1),
    "segmenter/grey16": ("segmenter", "grey16", 1),
    "catalog-generator/8x8192": ("catalog-generator", "8x8192", 1),
}
CANVASES = {"8x8192": [f"8192x{8192 - i}" for i in range(8)], "4096": ["4096x4096"]}
FACTOR_PHOTOS = ("GT04", "GT13")  # alphamatting.com: real photos with real alpha
# Steps whose parameters size their outputs apart from the image: their output factor comes from
# a run where the outputs dominate (a small cut-out on one 4096 x 4096 canvas).
OUTPUT_RUNS = {"catalog-generator": "4096"}
# Factor runs must not meet the budget they are measuring for.
UNBOUNDED = 64 << 30


def png_bomb(width: int, height: int, colour_type: int) -> bytes:
    """A 16-bit PNG of one colour (grey 0x8000, opaque), compressed row by row so that writing
    it never holds the image: deflate's ~1000:1 on constant rows makes it tiny."""
    channels = {0: 1, 6: 4}[colour_type]
    row = b"\x00" + (b"\x80\x00" * (channels - 1) + (b"\xff\xff" if channels == 4 else b"\x80\x00")) * width
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def chart_limits() -> dict[str, int]:
    """Each service's container memory limit in the Helm chart's values, in bytes."""
    values = yaml.safe_load((ROOT / "helm" / "studioline" / "values.yaml").read_text())
    default = values["defaults"]["resources"]["limits"]["memory"]
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}

    def parse(text: str) -> int:
        return int(text[:-2]) * units[text[-2:]]

    return {name: parse(((svc or {}).get("resources") or {}).get("limits", {}).get("memory", default))
            for name, svc in values["services"].items()}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


# ---- in the child process ---------------------------------------------------------------


def _inputs_for(service: str, bomb: str, workdir: Path):
    """(image bytes, {kind: bytes}, raw params) for one case."""
    import cv2
    import numpy as np

    if bomb in CANVASES:  # a small real cut-out (a C1 garment and its mask) on big canvases
        c1 = data_set("C1_viton_tryon_256")
        name = sorted((c1 / "cloth").glob("*.jpg"))[0].name
        bgr = cv2.imread(str(c1 / "cloth" / name))
        mask = cv2.imread(str(c1 / "cloth-mask" / name), cv2.IMREAD_GRAYSCALE)
        cutout = cv2.imencode(".png", np.dstack([bgr, mask]))[1].tobytes()
        return (c1 / "cloth" / name).read_bytes(), {"cutout": cutout}, {"sizes": CANVASES[bomb], "format": "jpeg"}
    if bomb == "factor":  # what a routed job carries: the kinds steps make, not a caller's fill_mask
        from studioline.shared import steps

        made = {kind for s in steps.specs().values() for kind in s.produced_kinds}
        inputs = {kind: (workdir / f"{kind}.png").read_bytes() for kind in steps.spec(service).inputs if kind in made}
        return (workdir / "image.jpg").read_bytes(), inputs, {}
    return (workdir / f"{bomb}.png").read_bytes(), {}, {}


def child(case: str, service: str, bomb: str, concurrent: int, workdir: Path) -> dict:
    import inspect

    from studioline.shared import jobpath, steps
    from studioline.shared.config import get_settings
    from studioline.shared.errors import StudiolineError
    from studioline.shared.models.store import ModelStore
    from studioline.shared.runtime import StepRunner, encode_outputs

    settings = get_settings()
    spec = steps.spec(service)
    step = spec.step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    step.warmup()
    runner = StepRunner(step, settings.batching)
    image, raw_inputs, raw_params = _inputs_for(service, bomb, workdir)
    holds_budget = "budget" in inspect.signature(jobpath.prepare).parameters
    budget = None
    if holds_budget:
        from studioline.shared.memory import budget_bytes, process_budget

        budget = process_budget(settings.limits)
    outcomes: list[str] = []

    def request() -> None:
        prepared = None
        try:
            params = spec.parse_params(raw_params)
            inputs = {k: jobpath.Blob(v, k) for k, v in raw_inputs.items()}
            kwargs = {"budget": budget} if holds_budget else {}
            prepared = jobpath.prepare(spec, params, jobpath.Blob(image), inputs, settings.limits, **kwargs)
            (result,), _ = runner.run([prepared.item], source="grpc")
            if isinstance(result, Exception):
                raise result
            encode_outputs(spec, result)
            outcomes.append("ok")
        except StudiolineError as exc:
            outcomes.append(f"{exc.code}: {exc}")
        finally:
            if prepared is not None and holds_budget:
                prepared.release()

    before_mb = _status_kb("VmRSS") / 1024
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    threads = [threading.Thread(target=request) for _ in range(concurrent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    peak_mb = _status_kb("VmHWM") / 1024
    runner.close()
    out = {
        "case": case,
        "rss_before_mb": round(before_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "growth_mb": round(peak_mb - before_mb, 1),
        "seconds": round(seconds, 2),
        "outcomes": sorted(set(outcomes)),
        "input_bytes": len(image),
    }
    if holds_budget:
        out["budget_mb"] = round(budget_bytes(settings.limits) / 2**20, 1)
    if case.startswith("factor/"):
        out.update(_factor_terms(spec, spec.parse_params(raw_params), image, raw_inputs, settings.limits))
    return out


def _factor_terms(spec, params, image: bytes, inputs: dict[str, bytes], limits) -> dict:
    """What the memory factors relate, as jobpath.memory_estimate counts it: the decoder's
    Pillow buffers, the 8-bit arrays the step is handed, and those it writes."""
    import dataclasses

    from studioline.shared.imageio import read_header
    from studioline.shared.jobpath import memory_estimate
    from studioline.shared.steps import artifact_kinds

    kinds = artifact_kinds()
    headers = [(read_header(image, limits), "rgb")] + [(read_header(d, limits), kinds[k].pixels) for k, d in sorted(inputs.items())]

    def estimate(handed: float, written: float) -> int:
        return memory_estimate(dataclasses.replace(spec, memory_factor=handed, output_memory_factor=written), params, headers)

    decoded = estimate(0, 0)
    return {"decoded_bytes": decoded, "handed_bytes": estimate(1, 0) - decoded, "written_bytes": estimate(0, 1) - decoded,
            "width": headers[0][0].width, "height": headers[0][0].height}


# ---- the parent --------------------------------------------------------------------------


def write_inputs(workdir: Path) -> None:
    (workdir / "rgba16.png").write_bytes(png_bomb(BOMB_SIDE, BOMB_SIDE, 6))
    (workdir / "grey16.png").write_bytes(png_bomb(BOMB_SIDE, BOMB_SIDE, 0))


def write_factor_inputs(workdir: Path, photo: str, pixels: float) -> None:
    """A real photo and its alpha, enlarged to about `pixels`: the image, its mask and cut-out."""
    import cv2
    import numpy as np

    a = data_set("A_alphamatting_lowres")
    bgr = cv2.imread(str(a / "input_training_lowres" / f"{photo}.png"))
    alpha = cv2.imread(str(a / "gt_training_lowres" / f"{photo}.png"), cv2.IMREAD_GRAYSCALE)
    scale = (pixels / (bgr.shape[0] * bgr.shape[1])) ** 0.5
    size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC)
    alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(workdir / "image.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    mask = np.where(alpha > 127, 255, 0).astype(np.uint8)
    cv2.imwrite(str(workdir / "mask.png"), mask)
    cv2.imwrite(str(workdir / "cutout.png"), np.dstack([bgr, alpha]))


def factors_of(runs: list[dict], output_run: dict | None, large_mp: float) -> dict:
    """memory_factor (and output_memory_factor) from a step's runs: the largest over the runs at
    the larger size, where the budget binds (a step's fixed overhead, one per process since one
    batch is on the model at a time, is the headroom's to carry)."""
    large = [r for r in runs if r.get("array_pixels_mp", 0) >= large_mp * 0.9 and "growth_mb" in r]
    out = {}
    written_factor = 0.0
    if output_run is not None:
        written_factor = (output_run["growth_mb"] * 2**20 - output_run["decoded_bytes"]) / output_run["written_bytes"]
        out["output_memory_factor"] = round(written_factor, 2)
        out["memory_factor"] = round(max((r["growth_mb"] * 2**20 - r["decoded_bytes"] - written_factor * r["written_bytes"])
                                         / r["handed_bytes"] for r in large), 2)
    else:
        out["memory_factor"] = round(max((r["growth_mb"] * 2**20 - r["decoded_bytes"]) / (r["handed_bytes"] + r["written_bytes"])
                                         for r in large), 2)
    return out


def run_child(case: str, spec: tuple, workdir: Path, tree: Path | None, limit: int) -> dict:
    env = {**os.environ, "STUDIOLINE_LOG_LEVEL": "WARNING", "STUDIOLINE_LIMITS__MEMORY_LIMIT_BYTES": str(limit),
           "STUDIOLINE_MODELS__DIR": str(ROOT / ".models")}
    if tree is not None:  # import studioline.* from that checkout instead of this one
        pkg = workdir / "tree" / "studioline"
        pkg.mkdir(parents=True, exist_ok=True)
        for name, target in (("shared", tree / "shared"), ("services", tree / "services"), ("v1", tree / "proto" / "studioline" / "v1")):
            if not (pkg / name).exists():
                (pkg / name).symlink_to(target.resolve())
        env["PYTHONPATH"] = str(pkg.parent)
    proc = subprocess.run([sys.executable, __file__, "--case", case, "--case-spec", json.dumps(spec), "--workdir", str(workdir)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        return {"case": case, "exit_code": proc.returncode, "killed": proc.returncode < 0, "stderr_tail": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="bomb cases to run (default: all)")
    ap.add_argument("--factors", action="store_true", help="measure each step's memory factor instead")
    ap.add_argument("--steps", default="", help="with --factors: these steps only (default: the step table)")
    ap.add_argument("--factor-mp", type=lambda v: [float(x) for x in v.split(",")], default=[5.0, 20.0],
                    help="with --factors: the sizes, in megapixels, the photos are enlarged to (default 5,20)")
    ap.add_argument("--tree", type=Path, help="run the cases against this checkout of the project")
    ap.add_argument("--label", default="after", help="where the figures go in the JSON (before / after)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--case-spec", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        service, bomb, concurrent = json.loads(args.case_spec)
        print(json.dumps(child(args.case, service, bomb, concurrent, args.workdir)))
        return 0

    from studioline.shared import steps
    from studioline.shared.config import LimitSettings

    path = args.out / "memory_bombs.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    limits = chart_limits()
    fraction = LimitSettings().memory_fraction
    report.update(machine=machine(), measured_at=now_iso(), bomb_side=BOMB_SIDE, memory_fraction=fraction,
                  chart_limits_mb={k: v >> 20 for k, v in limits.items()})
    with tempfile.TemporaryDirectory(prefix="studioline-bombs-") as tmp:
        workdir = Path(tmp)
        if args.factors:
            names = [s for s in args.steps.split(",") if s] or steps.names()
            runs: dict[str, list] = {name: [] for name in names}
            for photo in FACTOR_PHOTOS:
                for mp in args.factor_mp:
                    write_factor_inputs(workdir, photo, mp * 1e6)
                    for name in names:
                        r = run_child(f"factor/{name}", (name, "factor", 1), workdir, args.tree, UNBOUNDED)
                        r.update(photo=photo, array_pixels_mp=round(r.get("width", 0) * r.get("height", 0) / 1e6, 1))
                        runs[name].append(r)
                        print(f"{name:18s} {photo} {r.get('width')}x{r.get('height')}: growth {r.get('growth_mb')} MB "
                              f"({r.get('outcomes') or r.get('stderr_tail')})", flush=True)
            factors = report.setdefault("factors", {})
            for name in names:
                output_run = None
                if name in OUTPUT_RUNS:
                    output_run = run_child(f"factor/{name}", (name, OUTPUT_RUNS[name], 1), workdir, args.tree, UNBOUNDED)
                    output_run["canvases"] = CANVASES[OUTPUT_RUNS[name]]
                measured = factors_of(runs[name], output_run, max(args.factor_mp))
                spec = steps.spec(name)
                declared = {"memory_factor": spec.memory_factor, "output_memory_factor": spec.output_memory_factor}
                factors[name] = {"measured": measured, "declared": declared, "runs": runs[name], "output_run": output_run}
                print(f"{name:18s} measured {measured}, declared {declared}", flush=True)
        else:
            write_inputs(workdir)
            report["bomb_bytes"] = {b: (workdir / f"{b}.png").stat().st_size for b in ("rgba16", "grey16")}
            results = report.setdefault(args.label, {})
            for case in [c for c in args.cases.split(",") if c]:
                service = CASES[case][0]
                r = run_child(case, CASES[case], workdir, args.tree, limits[service])
                r["chart_limit_mb"] = limits[service] >> 20
                r["over_chart_limit"] = "peak_rss_mb" not in r or r["peak_rss_mb"] > r["chart_limit_mb"]
                results[case] = r
                print(f"{case:28s} peak {r.get('peak_rss_mb')} MB (growth {r.get('growth_mb')}, budget "
                      f"{r.get('budget_mb')}) in {r.get('seconds')} s: {r.get('outcomes') or r.get('stderr_tail')}", flush=True)
    write_json(path, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
