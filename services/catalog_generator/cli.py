"""The catalog generator's `studioline` commands: `eval compose` and `templates add|list`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(sub, evals) -> None:
    k = evals.add_parser("compose", help="try-on: put each pair's garment on its person, score against the real photo")
    k.add_argument("--pairs", type=Path, required=True, help="lines 'X_0.jpg X_1.jpg': person (image/) and garment (cloth/)")
    k.add_argument("--root", type=Path, required=True, help="folder with image/, cloth/, cloth-mask/, image-parse/")
    k.add_argument("--limit", type=int, help="only the first N pairs")
    k.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    k.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    k.add_argument("--sheet", type=Path, help="also write a contact sheet of 24 pairs (person, garment, ours, real, baseline)")

    k.set_defaults(run=eval_compose)

    p = sub.add_parser("templates", help="try-on model templates in the templates bucket")
    tsub = p.add_subparsers(dest="templates_command", required=True)
    t = tsub.add_parser("add", help="prepare a model photo once (pose, person mask, garment region) and store it")
    t.add_argument("photo", type=Path)
    t.add_argument("--id", dest="template_id", help="template id (default: the photo's file stem)")
    tsub.add_parser("list", help="list the stored template ids")
    p.set_defaults(run=templates_command)


def eval_compose(args) -> int:
    from studioline.services.catalog_generator.evaluate import eval_compose_command

    return eval_compose_command(args)


def templates_command(args) -> int:
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
