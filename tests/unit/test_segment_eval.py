"""`studioline eval segment`: the metrics on synthetic masks with known values, file pairing, and a
smoke run of the real segmenter on a few images of every set with ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from studioline.services.segmenter import evaluate
from studioline.shared.cli import main as cli_main
from studioline.shared.errors import ModelMissing
from studioline.shared.models.store import ModelStore

MODELS_DIR = Path(__file__).resolve().parents[2] / ".models"


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top : top + side, left : left + side] = True
    return m


def test_iou_known_values():
    a = _square(100, 10, 10, 40)  # 1600 px
    b = _square(100, 10, 30, 40)  # overlaps a in 40 x 20 = 800 px
    assert evaluate.iou(a, b) == pytest.approx(800 / (1600 + 1600 - 800))
    assert evaluate.iou(a, a) == 1.0
    assert evaluate.iou(a, np.zeros_like(a)) == 0.0
    assert evaluate.iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_boundary_is_the_inner_one_pixel_contour():
    edge = evaluate.boundary(_square(20, 5, 5, 6))
    assert edge.sum() == 4 * 6 - 4
    assert not edge[7:9, 7:9].any()
    # A mask that fills the frame has no boundary: the frame is not an edge.
    assert not evaluate.boundary(np.ones((10, 10), bool)).any()


def test_boundary_f_tolerance():
    truth = _square(200, 50, 50, 100)
    # Shifted down by 2 px: every boundary pixel lies within the 2 px tolerance of the other's.
    assert evaluate.boundary_f(_square(200, 52, 50, 100), truth) == pytest.approx(1.0)
    # Shifted by 3 px along both axes: only 5 px of two edges near where the outlines cross match
    # (e.g. the shifted top edge at columns 147..151 against the truth's right edge), 10 of 396.
    assert evaluate.boundary_f(_square(200, 53, 53, 100), truth) == pytest.approx(10 / 396)
    # Half the size, inside: its edge is far from the truth's (precision and recall both 0).
    assert evaluate.boundary_f(_square(200, 75, 75, 50), truth) == 0.0
    assert evaluate.boundary_f(np.zeros_like(truth), truth) == 0.0
    assert evaluate.boundary_f(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_boundary_f_one_sided_error():
    """A mask with a 1-px-wide spike: recall stays 1, precision drops by the spike's far pixels."""
    truth = _square(200, 50, 50, 100)  # boundary: 396 px
    pred = truth.copy()
    pred[20:50, 100] = True  # a 30 px spike above the top edge
    # pred's boundary: 395 of the square's (the spike's foot is inside now) + 30 spike pixels, of
    # which the 2 nearest the square are within tolerance; every truth boundary pixel is matched.
    precision = (395 + 2) / (395 + 30)
    assert evaluate.boundary_f(pred, truth) == pytest.approx(2 * precision / (precision + 1.0))


def test_mae_of_soft_alpha():
    truth = _square(10, 0, 0, 5)  # 25 of 100 px
    alpha = np.where(truth, 255, 0).astype(np.uint8)
    assert evaluate.mae(alpha, truth) == 0.0
    alpha[0, 0] = 0  # one foreground pixel fully wrong, one background pixel half wrong
    alpha[9, 9] = 128
    assert evaluate.mae(alpha, truth) == pytest.approx((1.0 + 128 / 255) / 100)


def test_score_thresholds_alpha_at_half():
    truth = _square(50, 10, 10, 20)
    alpha = np.where(truth, 128, 127).astype(np.uint8)  # 128 counts as foreground, 127 not
    s = evaluate.score(alpha, truth)
    assert s["iou"] == 1.0 and s["boundary_f"] == 1.0
    assert s["mae"] == pytest.approx(127 / 255, abs=1e-3)


def test_pairs_by_stem_and_reads_palette_labels(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(images / f"{stem}.jpg"), np.zeros((8, 8, 3), np.uint8))
    labels = np.zeros((8, 8), np.uint8)
    labels[2:4, 2:4] = 1  # a dark label: its palette colour would be near black as luma
    labels[5, 5] = 7
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([0, 0, 0, 1, 1, 1] + [200] * 762)
    pal.save(masks / "a.png")
    cv2.imwrite(str(masks / "b.png"), np.full((8, 8), 200, np.uint8))
    pairs, unmatched = evaluate.pair_files(images, masks)
    assert [p[0] for p in pairs] == ["a", "b"] and unmatched == ["c"]
    truth = evaluate.read_truth(masks / "a.png", 1)
    assert truth.sum() == 5
    assert evaluate.read_truth(masks / "b.png", 128).all()
    assert not evaluate.read_truth(masks / "b.png", 201).any()


def test_summary_means_and_median_time():
    records = [
        {"name": "a", "iou": 1.0, "boundary_f": 0.5, "mae": 0.0, "sec": 0.1},
        {"name": "b", "iou": 0.5, "boundary_f": 1.0, "mae": 0.2, "sec": 0.3},
        {"name": "c", "iou": 0.0, "boundary_f": 0.0, "mae": 0.4, "sec": 9.0},
    ]
    report = evaluate.summarise(records)
    assert report["n"] == 3
    assert report["iou"] == pytest.approx(0.5) and report["iou_median"] == pytest.approx(0.5)
    assert report["mae"] == pytest.approx(0.2)
    assert report["sec_per_image"] == pytest.approx(0.3)


# ---- the real segmenter on a few images of every set (the smoke subset of `make eval`) -------

# (folder of images, folder of masks, mask threshold, routed type, IoU floor). The floors sit
# well under the full sets' figures (bench/results/quality.json): they catch a broken path.
SMOKE_SETS = {
    "C1 garments on white": ("C1_viton_tryon_256/cloth", "C1_viton_tryon_256/cloth-mask", 128, "product_on_white", 0.93),
    "C1 on-model": ("C1_viton_tryon_256/image", "C1_viton_tryon_256/image-parse", 1, "on_model_studio", 0.85),
    "B2 street persons": (
        "B2_ccp_street_fashion_parsing/photos", "B2_ccp_street_fashion_parsing/foreground_mask_derived", 128,
        "lifestyle_on_model_street", 0.85,
    ),
    "B1 ECSSD": ("B1_ecssd_salient_subset/images", "B1_ecssd_salient_subset/ground_truth_mask", 128, None, 0.75),
}


@pytest.fixture(scope="module")
def smoke_settings():
    from studioline.shared.config import Settings

    settings = Settings()
    try:
        ModelStore(MODELS_DIR).path("u2netp.onnx")
    except ModelMissing as exc:
        pytest.skip(str(exc))
    return settings


@pytest.fixture(scope="module")
def smoke_step(smoke_settings):
    from studioline.services.segmenter.step import SegmenterStep

    step = SegmenterStep(smoke_settings, ModelStore(smoke_settings.models.dir))
    step.load()
    yield step
    step.close()


@pytest.mark.parametrize("name", list(SMOKE_SETS))
def test_smoke_eval_on_real_sets(name, shared_data, smoke_settings, smoke_step, tmp_path):
    images, masks, threshold, image_type, floor = SMOKE_SETS[name]
    pairs, _ = evaluate.pair_files(shared_data / images, shared_data / masks)
    stems = [stem for stem, _, _ in pairs[:: max(1, len(pairs) // 5)][:5]]
    report = evaluate.evaluate_segment(
        shared_data / images, shared_data / masks, mask_threshold=threshold,
        params=None if image_type else {"model": "u2netp"}, image_type=image_type,
        stems=stems, settings=smoke_settings, step=smoke_step, save_dir=tmp_path,
    )
    assert report["n"] == 5 and not report["skipped"]
    assert report["iou"] >= floor, report["images"]
    assert 0.0 <= report["mae"] <= 0.2 and 0.0 <= report["boundary_f"] <= 1.0
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(stems)


def test_cli_prints_one_json_object_last(shared_data, smoke_settings, tmp_path, capsys):
    """The CLI on a folder pair of three ECSSD images: the last line is the report, as JSON."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    src = shared_data / "B1_ecssd_salient_subset"
    for path in sorted((src / "images").glob("*.jpg"))[:3]:
        (images / path.name).symlink_to(path)
        (masks / f"{path.stem}.png").symlink_to(src / "ground_truth_mask" / f"{path.stem}.png")
    assert cli_main(["eval", "segment", "--images", str(images), "--masks", str(masks), "--model", "u2netp", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"n", "iou", "boundary_f", "mae", "sec_per_image"} <= set(report)
    assert report["n"] == 3 and report["iou"] > 0.5
