"""The matting step's `studioline` command: `eval matte`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(sub, evals) -> None:
    m = evals.add_parser("matte", help="score the alpha solver against ground-truth mattes (files matched by name stem)")
    m.add_argument("--images", type=Path, required=True, help="folder of photos")
    m.add_argument("--trimaps", type=Path, required=True, help="folder of trimaps (0 background, 255 foreground)")
    m.add_argument("--alphas", type=Path, required=True, help="folder of ground-truth alpha mattes")
    m.add_argument("--method", help="alpha solver (default: the matting step's)")
    m.add_argument("--save", type=Path, help="also write each solved alpha as <stem>.png into this folder")
    m.add_argument("--out", type=Path, help="also write the result, with measured_at, to this JSON file")
    m.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    m.set_defaults(run=eval_matte)


def eval_matte(args) -> int:
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
