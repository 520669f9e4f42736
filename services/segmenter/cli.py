"""The segmenter's `studioline` command: `eval segment`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(sub, evals) -> None:
    g = evals.add_parser("segment", help="score the segmenter against ground-truth masks (files matched by name stem)")
    g.add_argument("--images", type=Path, required=True, help="folder of photos")
    g.add_argument("--masks", type=Path, required=True, help="folder of ground-truth masks")
    g.add_argument("--mask-threshold", type=int, default=128,
                   help="mask values at or above it are foreground (1: any label of a parsing map)")
    g.add_argument("--model", help="segmenter model (default: what the router plans for --type, or for the found type)")
    g.add_argument("--type", dest="image_type", help="image type whose routed segmenter parameters to use")
    g.add_argument("--save", type=Path, help="also write each result mask as <stem>.png into this folder")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    g.set_defaults(run=eval_segment)


def eval_segment(args) -> int:
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
