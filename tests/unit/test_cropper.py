"""The cropper: window search, product windows, padding, the step, and fixation mass kept on MIT1003."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from studioline.services.cropper import ops
from studioline.services.cropper.params import CropperParams, parse_aspect
from studioline.services.cropper.step import CropperStep
from studioline.shared.config import PROJECT_ROOT, Settings
from studioline.shared.errors import InvalidParams, MissingInput
from studioline.shared.models.store import ModelStore
from studioline.shared.step import StepInput

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "E1_mit1003_saliency_subset"
MODELS = PROJECT_ROOT / ".models"
# The step's defaults for the window search (min_scale, keep) and the product margin.
P = CropperParams()
needs_model = pytest.mark.skipif(
    not (MODELS / "vit_s_focus.onnx").is_file(), reason=f"no vit_s_focus.onnx in {MODELS}; run `make models`"
)


@pytest.fixture(scope="module")
def step():
    s = CropperStep(Settings(), ModelStore(MODELS))
    if (MODELS / "vit_s_focus.onnx").is_file():
        s.load()
    yield s
    s.close()


def run(step, image, inputs=None, **params):
    return step.run(StepInput(image=image, params=step.spec.parse_params(params), inputs=inputs or {}))


def blob_map(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)).astype(np.float32)


def contains(box, inner):
    x, y, w, h = box
    ix, iy, iw, ih = inner
    return x <= ix and y <= iy and ix + iw <= x + w and iy + ih <= y + h


def off_centre_photo(cx_frac: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 900x450 near-white backdrop with a coloured object around x = cx_frac * 900."""
    rng = np.random.default_rng(0)
    img = np.full((450, 900, 3), 235, np.uint8) + rng.integers(0, 6, (450, 900, 3), dtype=np.uint8)
    cx = int(cx_frac * 900)
    cv2.circle(img, (cx, 225), 70, (220, 30, 40), -1)
    cv2.rectangle(img, (cx - 30, 180), (cx + 30, 270), (30, 60, 200), -1)
    return img, (cx - 70, 155, 141, 141)


# --- window search -------------------------------------------------------------------------


@pytest.mark.parametrize("cx", [90, 450, 1100])
def test_best_window_contains_off_centre_blob(cx):
    sal = blob_map(600, 1200, cx, 300, 40)
    box = ops.best_window(sal, 1.0, P.min_scale, P.keep)
    assert box[2:] == (600, 600)
    assert contains(box, (cx - 80, 220, 160, 160))


def test_best_window_flat_map_gives_centre_crop():
    box = ops.best_window(np.ones((400, 1000), np.float32), 1.0, P.min_scale, P.keep)
    assert box == (300, 0, 400, 400)


def test_best_window_shrinks_to_min_scale_around_small_object():
    sal = blob_map(600, 900, 700, 200, 25)
    box = ops.best_window(sal, 1.0, min_scale=0.5, keep=P.keep)
    assert box[2] == box[3] == 300  # half of the 600 px window: the blob fits well inside
    assert contains(box, (650, 150, 100, 100))
    assert ops.best_window(sal, 1.0, min_scale=1.0, keep=P.keep)[2] == 600


@pytest.mark.parametrize("aspect", ["1:1", "4:5", "3:4", "16:9", "9:16", "2:3"])
@pytest.mark.parametrize("size", [(768, 1024), (1000, 667), (333, 1500)])
def test_windows_have_the_exact_aspect(aspect, size):
    a = parse_aspect(aspect).ratio
    h, w = size
    sal = blob_map(h, w, w * 0.3, h * 0.6, 30)
    for box in (ops.best_window(sal, a, P.min_scale, P.keep), ops.best_window(sal, a, 0.6, P.keep)):
        x, y, bw, bh = box
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        assert abs(bw - bh * a) <= max(1.0, a) * 0.5 + 1e-9  # within rounding of one pixel
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 5 : w // 3] = 255
    _, _, pw, ph = ops.product_window(mask, a, P.margin)
    assert abs(pw - ph * a) <= max(1.0, a) + 1e-9


# --- product windows and padding ----------------------------------------------------------


@pytest.mark.parametrize("aspect", ["1:1", "4:5", "16:9"])
@pytest.mark.parametrize("margin", [0.0, 0.08, 0.2])
def test_product_window_holds_the_whole_mask_with_margin(aspect, margin):
    mask = np.zeros((800, 600), np.uint8)
    mask[100:700, 380:590] = 255  # tall product near the right edge
    a = parse_aspect(aspect).ratio
    x, y, w, h = ops.product_window(mask, a, margin)
    bx, by, bw, bh = 380, 100, 210, 600
    assert x <= bx - margin * w + 1 and bx + bw <= x + w - margin * w + 1
    assert y <= by - margin * h + 1 and by + bh <= y + h - margin * h + 1
    # The product's limiting side fills exactly (1 - 2 margin) of the window, not less.
    assert max(bw / w, bh / h) == pytest.approx(1 - 2 * margin, abs=0.01)


def test_crop_padded_fills_outside_the_image():
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    out = ops.crop_padded(img, (-2, 3, 6, 4), (9, 8, 7))
    assert out.shape == (4, 6, 3)
    assert (out[2:, :] == (9, 8, 7)).all()  # rows 5, 6 lie below the image
    assert (out[:, :2] == (9, 8, 7)).all()  # columns -2, -1 lie left of it
    np.testing.assert_array_equal(out[:2, 2:], img[3:5, 0:4])


def test_product_step_pads_with_border_colour_and_keeps_the_product(step):
    img = np.full((400, 300, 3), (240, 238, 236), np.uint8)
    img[20:380, 40:260] = (20, 90, 160)
    mask = np.zeros((400, 300), np.uint8)
    mask[20:380, 40:260] = 255
    out = run(step, img, {"mask": mask}, aspects=["16:9", "1:1"], margin=0.1)
    assert out.info["mode"] == "product" and out.info["pad_colour"] == "#F0EEEC"
    wide = out.images[0]
    assert wide.params == {"aspect": "16:9", "mode": "product"} and wide.kind == "crop" and wide.format == "jpeg"
    h, w = wide.pixels.shape[:2]
    assert abs(w / h - 16 / 9) < 0.01
    product = np.all(wide.pixels == (20, 90, 160), axis=2)
    assert product.sum() == 360 * 220  # all of it, unscaled
    ys, xs = np.nonzero(product)
    assert ys.min() >= 0.1 * h - 1 and h - 1 - ys.max() >= 0.1 * h - 1
    assert np.all(wide.pixels[:, :5] == (240, 238, 236))  # padding, beyond the photo's left edge


def test_product_step_pads_with_a_given_colour(step):
    img = np.full((400, 300, 3), (240, 238, 236), np.uint8)
    mask = np.zeros((400, 300), np.uint8)
    mask[20:380, 40:260] = 255
    out = run(step, img, {"mask": mask}, aspects=["16:9"], pad_colour="#336699")
    assert out.info["pad_colour"] == "#336699"
    assert np.all(out.images[0].pixels[:, :5] == (0x33, 0x66, 0x99))
    assert CropperStep.spec.parse_params({"pad_colour": "#abcdef"}).pad_colour == "#ABCDEF"


def test_auto_uses_the_alpha_of_a_cutout(step):
    rgba = np.zeros((300, 500, 4), np.uint8)
    rgba[100:200, 350:450] = (200, 40, 40, 255)
    out = run(step, rgba, aspects=["1:1"], margin=0.1)
    assert out.info["mode"] == "product" and out.info["pad_colour"] == "#FFFFFF"
    crop = out.images[0].pixels
    assert crop.shape == (125, 125, 3)
    assert np.all(crop[0, 0] == 255)  # transparent parts flattened on white


def test_max_side_downscales(step):
    mask = np.zeros((1000, 1000), np.uint8)
    mask[100:900, 200:800] = 255
    out = run(step, np.full((1000, 1000, 3), 128, np.uint8), {"mask": mask}, aspects=["4:5"], max_side=500)
    h, w = out.images[0].pixels.shape[:2]
    assert h == 500 and abs(w - 400) <= 1


# --- parameters and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{"aspects": ["1x1"]}, {"aspects": ["0:1"]}, {"aspects": ["1:11"]}, {"aspects": ["-4:5"]}, {"aspects": []}, {"aspects": ["1:1", "1:1"]},
     {"mode": "smart"}, {"margin": 0.6}, {"pad_colour": "white"}, {"min_scale": 0}, {"zoom": 2}],
)  # fmt: skip
def test_bad_params_are_rejected(params):
    with pytest.raises(InvalidParams):
        CropperStep.spec.parse_params(params)


def test_defaults_and_normalised_aspects():
    assert CropperStep.spec.parse_params({}).aspects == [(1, 1)]
    params = CropperStep.spec.parse_params({"aspects": [" 4 : 5 ", "16:9"]})
    assert params.aspects == [(4, 5), (16, 9)] and params.aspects[0].ratio == 0.8
    # Written back as the "W:H" the routing table uses, and read back to the same model.
    assert params.model_dump(mode="json")["aspects"] == ["4:5", "16:9"]
    assert CropperStep.spec.load_params(params.model_dump_json()) == params


def test_product_mode_needs_a_mask_and_falls_back_to_saliency_on_an_empty_one(step):
    img = np.full((100, 100, 3), 200, np.uint8)
    with pytest.raises(MissingInput):
        run(step, img, mode="product")
    out = run(step, img, {"mask": np.zeros((100, 100), np.uint8)}, mode="product")
    assert out.info["mode"] == "saliency" and out.needs_review is True
    assert "mask is empty" in out.warnings[0]
    assert [o.kind for o in out.images] == ["crop"]


def test_spectral_saliency_needs_no_model():
    img, obj = off_centre_photo(0.85)
    s = CropperStep(Settings(), ModelStore(Path("/nonexistent")))  # never loaded
    out = s.run(StepInput(image=img, params=s.spec.parse_params({"saliency": "spectral", "aspects": ["1:1"]})))
    assert out.info["mode"] == "saliency" and contains(out.info["boxes"]["1:1"], obj)


# --- saliency crops with the model --------------------------------------------------------


@needs_model
@pytest.mark.parametrize("cx", [0.12, 0.85])
def test_saliency_crop_contains_off_centre_object(step, cx):
    img, obj = off_centre_photo(cx)
    out = run(step, img, aspects=["1:1", "4:5"])
    assert out.info["mode"] == "saliency"
    for aspect, box in out.info["boxes"].items():
        assert contains(box, obj), (aspect, box, obj)
    assert [im.pixels.shape[:2] for im in out.images] == [(450, 450), (450, 360)]


@needs_model
def test_batch_isolates_failures(step):
    img, _ = off_centre_photo(0.5)
    params = step.spec.parse_params({"mode": "product"})
    results = step.run_batch([StepInput(image=img, params=params), StepInput(image=img, params=step.spec.parse_params({}))])
    assert isinstance(results[0], MissingInput) and results[1].info["mode"] == "saliency"


# Measured on the 20 photos below (sorted names, every third): mean fixation mass kept over
# 1:1, 4:5 and 9:16 crops, ours 0.913 vs centre crop 0.919; on the photos whose fixations
# the centre crop misses (it keeps < 90% for 4:5 / 9:16; 12 cases) ours 0.729 vs 0.703.
# MIT1003 is strongly centre-biased: even the best window on the fixation map itself beats
# the centre crop by only 0.03, and the img-focus map alone (no centre prior) loses by 0.03.
OFF_CENTRE_GAIN_MIN = 0.015
OVERALL_LOSS_MAX = 0.015


@needs_model
def test_fixation_mass_kept_vs_centre_crop(step):
    if not DATA.is_dir():
        pytest.skip(f"MIT1003 subset not found at {DATA}")
    photos = sorted((DATA / "stimuli").glob("*.jpg"))[::3][:20]
    aspects = ["1:1", "4:5", "9:16"]
    ours, centre, off_ours, off_centre = [], [], [], []
    for path in photos:
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        fix = cv2.imread(str(DATA / "fixation_maps" / path.name), cv2.IMREAD_GRAYSCALE).astype(np.float64)
        out = run(step, img, aspects=aspects)
        height, width = fix.shape
        for aspect in aspects:
            x, y, w, h = out.info["boxes"][aspect]
            cx, cy = (width - w) // 2, (height - h) // 2
            kept = fix[y : y + h, x : x + w].sum() / fix.sum()
            base = fix[cy : cy + h, cx : cx + w].sum() / fix.sum()
            ours.append(kept)
            centre.append(base)
            if aspect != "1:1" and base < 0.9:
                off_ours.append(kept)
                off_centre.append(base)
    assert len(off_ours) >= 8
    assert np.mean(off_ours) - np.mean(off_centre) >= OFF_CENTRE_GAIN_MIN, (np.mean(off_ours), np.mean(off_centre))
    assert np.mean(ours) >= np.mean(centre) - OVERALL_LOSS_MAX, (np.mean(ours), np.mean(centre))
