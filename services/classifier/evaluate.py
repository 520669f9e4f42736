"""Scores the classifier on labelled photos: `studioline eval classify`.

The real ClassifierStep runs over every row of a labels CSV (columns path and image_type, more
allowed; paths relative to a root folder), in batches as the service runs it, and the result is
accuracy, macro-F1, expected calibration error (15 equal-width bins over the top-class
confidence), per-class precision and recall, the confusion matrix and the classify time per
image after decoding. A row whose file is missing or unreadable, or whose label is not one of our
types, is reported and counted, not fatal.

`split="val"` keeps only the rows the shipped head was validated on: train.py's seeded
stratified split re-derived from the same labels (checked by their digest). That is the honest
figure; the full set includes the images the head was fitted on.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from studioline.services.classifier.params import ClassifierParams
from studioline.services.classifier.step import IMAGE_TYPES, ClassifierStep
from studioline.services.classifier.train import LABEL_MAP, evaluate, labels_digest, stratified_split
from studioline.shared.errors import PermanentError
from studioline.shared.imageio import decode_image
from studioline.shared.step import StepInput

SPLITS = ("all", "val")
DEFAULT_BATCH = 16


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str


def read_label_rows(csv_path: Path) -> list[tuple[str, str]]:
    """(path, image type) per row, the source's label names mapped to ours; not validated here."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "image_type"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: no column(s) {', '.join(sorted(missing))}; expected path,image_type")
        return [(r["path"], LABEL_MAP.get(r["image_type"], r["image_type"])) for r in reader]


def validation_rows(rows: list[tuple[str, str]], head_metrics: dict) -> list[tuple[str, str]]:
    """The rows of the head's validation split, in CSV order, as train.py drew them."""
    if head_metrics.get("labels_sha256") != labels_digest(rows):
        raise ValueError(
            "these labels are not the ones the shipped head was trained on (their digest differs), so its "
            "validation split is not defined for them; retrain (make train-classifier) or use --split all"
        )
    y = np.array([IMAGE_TYPES.index(t) for _, t in rows])
    _, val = stratified_split(y, head_metrics["val_fraction"], head_metrics["seed"])
    picked = [rows[i] for i in val]
    if head_metrics.get("validation_sha256") != labels_digest(picked):
        raise ValueError("the re-derived validation split differs from the one the head was validated on; "
                         "retrain the head (make train-classifier) with this code")
    return picked


def classify_labelled(
    step: ClassifierStep,
    rows: list[tuple[str, str]],
    root: Path,
    limits,
    batch_size: int = DEFAULT_BATCH,
    on_unreadable: Callable[[Unreadable], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float], list[Unreadable]]:
    """(labels as class indices, probabilities N x C, seconds per image of each batch, unreadable rows).

    Images are decoded first; only the step's run_batch is timed, divided by the batch's size.
    """
    classes = step.heads[ClassifierParams().head_version].classes
    params = ClassifierParams(include_cues=False)
    truth: list[int] = []
    probs: list[list[float]] = []
    per_image: list[float] = []
    unreadable: list[Unreadable] = []

    def skip(path: str, reason: str) -> None:
        unreadable.append(Unreadable(path, reason))
        if on_unreadable is not None:
            on_unreadable(unreadable[-1])

    def flush(pending: list[tuple[str, int, np.ndarray]]) -> None:
        start = time.perf_counter()
        outputs = step.run_batch([StepInput(image=image, params=params) for _, _, image in pending])
        per_image.append((time.perf_counter() - start) / len(pending))
        for (path, label, _), out in zip(pending, outputs):
            if isinstance(out, Exception):
                skip(path, f"classifier failed: {out}")
                continue
            truth.append(label)
            probs.append([out.info["scores"][c] for c in classes])

    pending: list[tuple[str, int, np.ndarray]] = []
    for path, label in rows:
        if label not in classes:
            skip(path, f"label {label!r} is not an image type ({', '.join(classes)})")
            continue
        try:
            image = decode_image((Path(root) / path).read_bytes(), limits).pixels
        except OSError as exc:
            skip(path, f"cannot read: {exc.strerror or exc}")
            continue
        except PermanentError as exc:  # ImageRejected: not an image, too large, ...
            skip(path, str(exc))
            continue
        pending.append((path, classes.index(label), image))
        if len(pending) == batch_size:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    return np.array(truth, int), np.array(probs, float).reshape(-1, len(classes)), per_image, unreadable


def evaluate_labels(
    labels: Path,
    root: Path,
    *,
    split: str = "all",
    batch_size: int = DEFAULT_BATCH,
    settings=None,
    step: ClassifierStep | None = None,
    on_unreadable: Callable[[Unreadable], None] | None = None,
) -> dict:
    """The evaluation report (see the module doc) for one labels CSV; loads the step unless given."""
    from studioline.shared.config import get_settings
    from studioline.shared.models.store import ModelStore

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    settings = settings or get_settings()
    own_step = step is None
    if own_step:
        step = ClassifierStep(settings, ModelStore(settings.models.dir))
        step.load()
    try:
        head = step.heads[ClassifierParams().head_version]
        rows = read_label_rows(Path(labels))
        if split == "val":
            rows = validation_rows(rows, head.metrics)
        y, probs, per_image, unreadable = classify_labelled(
            step, rows, Path(root), settings.limits, batch_size, on_unreadable
        )
    finally:
        if own_step:
            step.close()
    report: dict = {"n": int(len(y))}
    if len(y):
        metrics = evaluate(probs, y, head.classes)
        report.update({k: metrics[k] for k in ("accuracy", "macro_f1", "ece", "per_class")})
        report["sec_per_image"] = statistics.median(per_image)
        report["confusion"] = metrics["confusion"]
    report.update({
        "classes": list(head.classes),
        "split": split,
        "head_version": head.version,
        "batch_size": batch_size,
        "unreadable": len(unreadable),
        "unreadable_rows": [{"path": u.path, "reason": u.reason} for u in unreadable],
    })
    cv = head.metrics.get("cross_validation_5fold")
    if cv:  # for context: train.py's 5-fold figure over all its labelled photos, uncalibrated
        report["head_cross_validation_5fold"] = {k: cv[k] for k in ("n", "accuracy", "macro_f1", "ece")}
    return report


def with_timestamp(report: dict) -> dict:
    """The report as bench/results keeps it: measured_at (UTC, ISO 8601) added."""
    return {**report, "measured_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}


def plot_confusion(report: dict, path: Path) -> Path:
    """Draws the report's confusion matrix (counts, row-normalised shading) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, confusion = report["classes"], np.array(report["confusion"])
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(
        f"classifier {report['head_version']}, split {report['split']}: n={report['n']}  "
        f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  ECE {report['ece']:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(report: dict) -> str:
    """The report as a few readable lines: the headline figures, per-class rows and the confusion."""
    lines = [f"classifier {report['head_version']}, split {report['split']}: n={report['n']}, "
             f"unreadable {report['unreadable']}"]
    if not report["n"]:
        return "\n".join(lines + ["no image could be scored"])
    lines.append(f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
                 f"ECE {report['ece']:.4f}   {report['sec_per_image'] * 1000:.1f} ms/image "
                 f"(median, batches of {report['batch_size']}, after decoding)")
    width = max(map(len, report["classes"]))

    def fmt(v: float | None) -> str:
        return "     -" if v is None else f"{v:6.3f}"

    lines.append(f"{'type':<{width}}  precision  recall      n")
    for name in report["classes"]:
        c = report["per_class"][name]
        lines.append(f"{name:<{width}}     {fmt(c['precision'])}  {fmt(c['recall'])}  {c['n']:5d}")
    lines.append("confusion (rows = label, columns = prediction, in the order above):")
    for name, row in zip(report["classes"], report["confusion"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    cv = report.get("head_cross_validation_5fold")
    if cv:
        lines.append(f"(the head at training time, 5-fold cross-validation over n={cv['n']}: accuracy "
                     f"{cv['accuracy']:.4f}, macro-F1 {cv['macro_f1']:.4f}, ECE {cv['ece']:.4f} uncalibrated)")
    return "\n".join(lines)
