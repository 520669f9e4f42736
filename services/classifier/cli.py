"""The classifier's `studioline` commands: `eval classify` and `explain`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(sub, evals) -> None:
    c = evals.add_parser("classify", help="score the classifier on labelled photos (CSV columns path,image_type)")
    c.add_argument("--labels", type=Path, required=True, help="CSV with columns path,image_type (more allowed)")
    c.add_argument("--root", type=Path, required=True, help="folder the CSV's paths are relative to")
    c.add_argument("--split", choices=("all", "val"), default="all",
                   help="val: only the shipped head's validation rows (the images it never saw)")
    c.add_argument("--batch", type=int, default=16, help="images per classifier call")
    c.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    c.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    c.add_argument("--plot", type=Path, help="also draw the confusion matrix to this PNG (needs the eval extra)")
    c.set_defaults(run=eval_classify)

    p = sub.add_parser("explain", help="classify one photo: type, confidence, the chain it takes and the cues why")
    p.add_argument("image", type=Path)
    p.add_argument("--json", action="store_true", help="print the explanation as one JSON object")
    p.set_defaults(run=explain)


def eval_classify(args) -> int:
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


def explain(args) -> int:
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
