"""The classifier's evaluation (`studioline eval classify`) and explanation (`studioline explain`)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from studioline.services.classifier import ops
from studioline.services.classifier.evaluate import evaluate_labels, read_label_rows, validation_rows
from studioline.services.classifier.explain import explain_image
from studioline.services.classifier.params import ClassifierParams
from studioline.services.classifier.step import HEAD_FILES, IMAGE_TYPES, Head, describe
from studioline.services.classifier.train import evaluate, labels_digest
from studioline.shared.cli import main
from studioline.shared.config import PROJECT_ROOT, Settings
from studioline.shared.models import mobilenet
from studioline.shared.routing import Router
from studioline.shared.step import StepInput, StepOutput

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LABELS = Path(__file__).resolve().parents[1] / "data" / "image_types.csv"
MODELS = PROJECT_ROOT / ".models"
HAS_BACKBONE = (MODELS / mobilenet.ONNX_FILE).is_file() or (
    (MODELS / mobilenet.WEIGHTS_FILE).is_file() and importlib.util.find_spec("torch") is not None
)
needs_backbone = pytest.mark.skipif(not HAS_BACKBONE, reason=f"no {mobilenet.ONNX_FILE} in {MODELS}; run `make models`")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"labelled photos absent: {DATA} not found")
JSON_KEYS = {"n", "accuracy", "macro_f1", "ece", "per_class", "sec_per_image"}


def packshot(h: int = 320, w: int = 240) -> np.ndarray:
    """A dark garment-like shape on a plain white backdrop."""
    image = np.full((h, w, 3), 250, np.uint8)
    cv2.rectangle(image, (w // 4, h // 5), (3 * w // 4, 4 * h // 5), (40, 50, 90), -1)
    return image


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_on_a_hand_made_case():
    classes = ("a", "b", "c", "d")  # "d" is neither labelled nor predicted
    y = np.array([0, 0, 1, 2])
    probs = np.array([
        [0.90, 0.05, 0.05, 0.0],  # a, right, confidence 0.90
        [0.04, 0.91, 0.05, 0.0],  # a taken for b, confidence 0.91: the same ECE bin as the first
        [0.20, 0.70, 0.10, 0.0],  # b, right, 0.70
        [0.09, 0.09, 0.82, 0.0],  # c, right, 0.82
    ])
    m = evaluate(probs, y, classes)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.75)
    # F1: a 2/3 (1 of 2 found, 1 of 1 right), b 2/3 (1 of 1 found, 1 of 2 right), c 1; d has no labels.
    assert m["macro_f1"] == pytest.approx(7 / 9)
    # Bin (0.867, 0.933]: 2 images, accuracy 0.5, mean confidence 0.905; bins of 0.70 and 0.82: right.
    assert m["ece"] == pytest.approx(0.5 * 0.405 + 0.25 * 0.30 + 0.25 * 0.18)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "n": 2}
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "n": 1}
    assert m["per_class"]["d"] == {"precision": None, "recall": None, "n": 0}
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


class FakeStep:
    """Stands in for ClassifierStep: says "other" with 0.6 for every image; records its batches."""

    def __init__(self):
        self.heads = {"v1": SimpleNamespace(classes=IMAGE_TYPES, version="v1", metrics={})}
        self.batches: list[int] = []

    def run_batch(self, items):
        self.batches.append(len(items))
        scores = {t: 0.1 for t in IMAGE_TYPES} | {"other": 0.6}
        return [StepOutput(info={"scores": scores}) for _ in items]


def test_unreadable_rows_are_counted_not_fatal(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), packshot())
    (tmp_path / "text.jpg").write_text("not an image")
    labels = tmp_path / "labels.csv"
    rows = [
        ("ok.png", "non_fashion_other"),  # the source's name for "other"
        ("missing.jpg", "other"),
        ("text.jpg", "other"),
        ("ok.png", "mannequin"),  # not one of our types
        ("ok.png", "product_on_white"),
        ("ok.png", "other"),
    ]
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "image_type", "set", "note"])
        w.writerows([(p, t, "x", "") for p, t in rows])
    fake = FakeStep()
    seen = []
    report = evaluate_labels(labels, tmp_path, split="all", batch_size=2, step=fake, on_unreadable=seen.append)
    assert report["n"] == 3 and report["unreadable"] == 3 == len(seen)
    reasons = {u["path"] + ":" + u["reason"].split(":")[0] for u in report["unreadable_rows"]}
    assert any(r.startswith("missing.jpg:cannot read") for r in reasons)
    assert any(r.startswith("text.jpg:") for r in reasons)
    assert any("mannequin" in u["reason"] for u in report["unreadable_rows"])
    assert fake.batches == [2, 1]
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["per_class"]["other"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "n": 2}
    assert report["sec_per_image"] >= 0
    assert JSON_KEYS <= set(report)


def test_validation_rows_are_the_heads_validation_split():
    head = Head.load(HEAD_FILES["v1"])
    rows = read_label_rows(LABELS)
    val = validation_rows(rows, head.metrics)
    counts = Counter(t for _, t in val)
    stored = head.metrics["validation"]
    assert len(val) == stored["n"]
    assert [counts[t] for t in IMAGE_TYPES] == [sum(r) for r in stored["confusion"]]
    assert len(set(val)) == len(val)
    with pytest.raises(ValueError, match="re-derived validation split differs"):
        validation_rows(rows, head.metrics | {"seed": head.metrics["seed"] + 1})
    changed = [(p, "other" if i == 0 else t) for i, (p, t) in enumerate(rows)]
    assert labels_digest(changed) != labels_digest(rows)
    with pytest.raises(ValueError, match="not the ones the shipped head was trained on"):
        validation_rows(changed, head.metrics)


# --- the CLI on real photos ---------------------------------------------------------------------


@needs_backbone
@needs_data
def test_eval_cli_prints_one_json_object_last(tmp_path):
    rows = read_label_rows(LABELS)
    picked = [next(r for r in rows if r[1] == t) for t in IMAGE_TYPES]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "image_type"])
        w.writerows(picked + [("no/such/file.jpg", "other")])
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "studioline.shared.cli", "eval", "classify", "--labels", str(labels),
         "--root", str(DATA), "--json", "--batch", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert JSON_KEYS <= set(report)
    assert report["n"] == 5 and report["unreadable"] == 1
    assert "no/such/file.jpg" in proc.stderr
    assert report["accuracy"] >= 0.8  # one clear photo of each type
    assert set(report["per_class"]) == set(IMAGE_TYPES)
    assert 0 < report["sec_per_image"] < 1.0
    saved = json.loads(out.read_text())
    assert saved["confusion"] == report["confusion"] and saved["classes"] == list(IMAGE_TYPES)
    assert saved["measured_at"].endswith("+00:00")


# --- explain ------------------------------------------------------------------------------------


@needs_backbone
def test_explain_names_the_chain_and_the_cues(tmp_path, capsys):
    path = tmp_path / "packshot.png"
    cv2.imwrite(str(path), packshot())
    assert main(["explain", str(path)]) == 0
    text = capsys.readouterr().out
    assert "chain" in text and "border_white" in text
    assert main(["explain", str(path), "--json"]) == 0
    e = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    router = Router.from_settings(Settings())
    assert e["chain"] == router.decide(e["image_type"], e["confidence"]).chain
    assert e["steps"] and {s["step"] for s in e["steps"]} <= {
        "segmenter", "matting", "inpainter", "cropper", "catalog-generator"
    }
    assert [c["name"] for c in e["cues"]] != list(ops.CUE_NAMES)  # sorted by weight, not listed
    assert {c["name"] for c in e["cues"]} == set(ops.CUE_NAMES)
    magnitudes = [abs(c["contribution"]) for c in e["cues"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for c in e["cues"]:
        assert c["contribution"] == pytest.approx(c["weight"] * c["normalised"], rel=1e-4, abs=1e-6)
    logit = e["logit"]
    assert logit["total"] == pytest.approx(logit["bias"] + logit["backbone"] + logit["cues"], abs=1e-4)
    assert logit["cues"] == pytest.approx(sum(c["contribution"] for c in e["cues"]), abs=1e-4)


@needs_backbone
def test_explain_agrees_with_the_step_and_flags_low_confidence(classifier_step):
    image = packshot()
    table = PROJECT_ROOT / "shared" / "routing.yaml"
    e = explain_image(classifier_step, Router.from_file(table, 0.0, "fallback"), image)
    info = classifier_step.run(StepInput(image=image, params=ClassifierParams())).info
    assert e["image_type"] == info["image_type"]
    assert e["scores"] == pytest.approx(info["scores"], abs=1e-6)
    # The logit terms reproduce the step's probabilities through the head's temperature.
    head = classifier_step.heads["v1"]
    chosen = head.classes.index(e["image_type"])
    x, _ = describe(classifier_step.backbone, [image])
    logits = head.logit_terms(x[0]).sum(axis=1) + head.bias
    assert logits[chosen] == pytest.approx(e["logit"]["total"], abs=1e-3)
    np.testing.assert_allclose(ops.softmax(logits / head.temperature), head.probabilities(x)[0], atol=1e-5)
    strict = explain_image(classifier_step, Router.from_file(table, 1.0, "fallback"), image)
    assert strict["needs_review"] and strict["chain"] == "fallback"
    assert not e["needs_review"] and e["chain"] != "fallback"
