"""The classifier: its cues, its shipped head, the MobileNetV2 backbone, the step and training."""

from __future__ import annotations

import csv
import importlib.util
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from studioline.services.classifier import ops
from studioline.services.classifier.params import ClassifierParams
from studioline.services.classifier.step import HEAD_FILES, IMAGE_TYPES, ClassifierStep, Head
from studioline.shared.config import PROJECT_ROOT, LimitSettings
from studioline.shared.errors import ImageRejected, InvalidParams, ModelMissing
from studioline.shared.imageio import decode_image
from studioline.shared.models import mobilenet
from studioline.shared.models.store import ModelStore
from studioline.shared.step import StepInput

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# The source's labels with the plainly wrong ones fixed (tests/data/LABEL_FIXES.md); images in DATA.
LABELS = Path(__file__).resolve().parents[1] / "data" / "image_types.csv"
MODELS = PROJECT_ROOT / ".models"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# The backbone can run where its ONNX file exists or can be exported here from the weights.
HAS_BACKBONE = (MODELS / mobilenet.ONNX_FILE).is_file() or ((MODELS / mobilenet.WEIGHTS_FILE).is_file() and HAS_TORCH)
needs_backbone = pytest.mark.skipif(not HAS_BACKBONE, reason=f"no {mobilenet.ONNX_FILE} in {MODELS}; run `make models`")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"labelled photos absent: {DATA} not found")
# Where the head was fitted, it scored 1.000 accuracy on its 214-image validation split and 0.988
# in 5-fold cross-validation over all 1072 photos.
# The 25 fixed photos below may overlap its training part, so their bound (all 25 were right
# when measured) says the shipped head still works, not how well it generalises.
SAMPLE_ACCURACY_MIN = 0.96


def labelled_rows() -> list[tuple[str, str]]:
    with open(LABELS, newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["path"], "other" if r["image_type"] == "non_fashion_other" else r["image_type"]) for r in rows]


def sample(per_type: int, seed: int) -> list[tuple[str, str]]:
    """`per_type` photos of every type, picked from the sorted CSV by a seeded draw."""
    rows = sorted(labelled_rows())
    rng = random.Random(seed)
    return [row for t in IMAGE_TYPES for row in rng.sample([r for r in rows if r[1] == t], per_type)]


def load(path: str) -> np.ndarray:
    return decode_image((DATA / path).read_bytes(), LimitSettings()).pixels


# --- cues ---------------------------------------------------------------------------------------


def test_cues_on_a_packshot_like_image():
    image = np.full((400, 300, 3), 250, np.uint8)
    image[100:300, 75:225] = (30, 60, 120)  # a dark blue garment filling a quarter of the frame
    cues = ops.compute_cues(image)
    assert set(cues) == set(ops.CUE_NAMES)
    assert cues["border_white"] == pytest.approx(1.0)
    assert cues["border_std"] < 0.01
    assert cues["fill_ratio"] == pytest.approx(0.25, abs=0.03)
    assert cues["fill_ratio_edge"] == pytest.approx(0.0, abs=1e-6)
    assert cues["skin_fraction"] < 0.01


def test_cues_see_skin_and_clutter():
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (30, 30, 1), dtype=np.uint8)
    image = np.repeat(np.repeat(np.repeat(cells, 10, axis=0), 10, axis=1), 3, axis=2)  # busy grey blocks
    image[50:250, 100:200] = (224, 172, 140)  # a patch of skin tone
    cues = ops.compute_cues(image)
    assert cues["border_white"] < 0.2  # only the blocks that happen to be near-white
    assert cues["skin_fraction"] == pytest.approx(200 * 100 / 300**2, abs=0.05)
    assert cues["edge_density"] > 0.1
    assert cues["fill_ratio_edge"] > 0.5


def test_work_image_keeps_small_images_and_shrinks_large_ones():
    small = np.zeros((100, 80, 3), np.uint8)
    assert ops.work_image(small) is small
    assert ops.work_image(np.zeros((2048, 1536, 3), np.uint8)).shape == (ops.WORK_SIDE, 192, 3)


# --- head ---------------------------------------------------------------------------------------


def test_shipped_head_loads_with_the_five_types():
    path = HEAD_FILES["v1"]
    assert path.stat().st_size < 1_000_000
    head = Head.load(path)
    assert head.version == "v1"
    assert head.classes == IMAGE_TYPES
    assert head.cue_names == ops.CUE_NAMES
    assert 0.2 < head.temperature < 5.0
    assert head.metrics["validation"]["accuracy"] >= 0.95
    probs = head.probabilities(np.random.default_rng(0).normal(size=(7, head.weight.shape[1])).astype(np.float32))
    assert probs.shape == (7, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_params_validate():
    assert ClassifierParams().head_version == "v1"
    with pytest.raises(InvalidParams):
        ClassifierStep.spec.parse_params({"head_version": "v9"})
    with pytest.raises(InvalidParams):
        ClassifierStep.spec.parse_params({"threshold": 0.5})


# --- backbone -----------------------------------------------------------------------------------


def test_backbone_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(ModelMissing, match="make models"):
        mobilenet.MobileNetV2Features(ModelStore(tmp_path), device="cpu").load()


@pytest.mark.skipif(not (HAS_TORCH and (MODELS / mobilenet.WEIGHTS_FILE).is_file()), reason="needs torch and the .pth")
def test_export_matches_torch_and_has_a_dynamic_batch(tmp_path):
    import torch

    shutil.copy(MODELS / mobilenet.WEIGHTS_FILE, tmp_path)
    model = mobilenet.MobileNetV2Features(ModelStore(tmp_path), device="cpu")
    model.load()  # exports mobilenet_v2.onnx, as the .pth is there and torch imports
    assert (tmp_path / mobilenet.ONNX_FILE).is_file()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120 + 40 * i, 90, 3), dtype=np.uint8) for i in range(3)]
    features, logits = model.predict(images)
    assert features.shape == (3, 1280) and logits.shape == (3, 1000)
    with torch.no_grad():
        ref_f, ref_l = mobilenet.load_mobilenet_v2(tmp_path / mobilenet.WEIGHTS_FILE)(
            torch.from_numpy(mobilenet.preprocess(images))
        )
    np.testing.assert_allclose(features, ref_f.numpy(), atol=1e-3)
    np.testing.assert_allclose(logits, ref_l.numpy(), atol=1e-3)
    assert model.predict(images[:1])[0].shape == (1, 1280)


@needs_backbone
@needs_data
def test_backbone_knows_shoes_when_it_sees_them():
    # ImageNet footwear classes: clog, cowboy boot, loafer, running shoe, sandal.
    footwear = {502, 514, 630, 770, 774}
    paths = sorted((DATA / "C3_clothing_flatlay_cc0" / "test" / "shoes").glob("*.jpg"))[:10]
    model = mobilenet.MobileNetV2Features(ModelStore(MODELS), device="cpu")
    model.load()
    _, logits = model.predict([load(str(p.relative_to(DATA))) for p in paths])
    assert sum(int(i) in footwear for i in logits.argmax(axis=1)) >= 8


# --- step ---------------------------------------------------------------------------------------


@needs_backbone
def test_step_output_and_per_item_failures(classifier_step):
    image = np.full((300, 240, 3), 248, np.uint8)
    image[60:240, 60:180] = (20, 20, 20)
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    items = [
        StepInput(image=image, params=ClassifierParams()),
        StepInput(image=np.zeros((10, 10), np.uint8), params=ClassifierParams()),  # not an image the step takes
        StepInput(image=rgba, params=ClassifierParams(include_cues=False)),
    ]
    first, bad, third = classifier_step.run_batch(items)
    assert isinstance(bad, ImageRejected)
    info = first.info
    assert first.images == []
    assert set(info["scores"]) == set(IMAGE_TYPES)
    assert sum(info["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert info["image_type"] == max(info["scores"], key=info["scores"].get)
    assert info["confidence"] == pytest.approx(info["scores"][info["image_type"]])
    assert set(info["cues"]) == set(ops.CUE_NAMES)
    assert "cues" not in third.info
    assert third.info["scores"] == pytest.approx(info["scores"], abs=1e-4)  # opaque RGBA = its RGB
    assert classifier_step.run(items[0]).info["image_type"] == info["image_type"]


@needs_backbone
@needs_data
def test_accuracy_on_a_fixed_labelled_sample(classifier_step):
    rows = sample(per_type=5, seed=0)
    outputs = classifier_step.run_batch([StepInput(image=load(p), params=ClassifierParams()) for p, _ in rows])
    predicted = [o.info["image_type"] for o in outputs]
    accuracy = np.mean([p == t for p, (_, t) in zip(predicted, rows)])
    wrong = [(path, t, p) for p, (path, t) in zip(predicted, rows) if p != t]
    assert accuracy >= SAMPLE_ACCURACY_MIN, f"accuracy {accuracy:.2f}; wrong: {wrong}"


# --- training -----------------------------------------------------------------------------------


@needs_backbone
@needs_data
def test_training_smoke(tmp_path):
    from studioline.services.classifier.train import train

    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "image_type", "set", "note"])
        for path, t in sample(per_type=3, seed=1):
            w.writerow([path, "non_fashion_other" if t == "other" else t, "", ""])
    out = tmp_path / "head.npz"
    metrics = train(
        labels, DATA, out, seed=0, l2=1e-2, max_iter=20, store_root=MODELS, cache_dir=None, cross_validate=False
    )
    assert metrics["validation"]["n"] == 5 and metrics["n_train"] == 10
    head = Head.load(out)
    assert head.classes == IMAGE_TYPES
    assert head.metrics["validation"]["n"] == 5
    probs = head.probabilities(np.zeros((1, head.weight.shape[1]), np.float32) + head.mean)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
