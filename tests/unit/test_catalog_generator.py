"""The catalog-generator: fill ratio, centring, background, contact shadow, alpha handling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from studioline.services.catalog_generator.step import CatalogGeneratorStep
from studioline.shared.errors import InvalidParams, PermanentError
from studioline.shared.step import StepInput

C1 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "C1_viton_tryon_256"
BLUE = (30, 90, 200)


@pytest.fixture(scope="module")
def step():
    return CatalogGeneratorStep(None, None)


def run(step, cutout, **params):
    return step.run(StepInput(image=cutout[..., :3], params=step.spec.parse_params(params), inputs={"cutout": cutout}))


def cutout(h=600, w=400, box=(100, 50, 150, 400), colour=BLUE, under=(0, 0, 0)):
    """Transparent canvas (whose colour is `under`) with an opaque, anti-aliased ellipse in box."""
    x, y, bw, bh = box
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = under
    alpha = np.zeros((h * 4, w * 4), np.uint8)  # drawn 4x larger and shrunk: soft edges
    cv2.ellipse(alpha, ((4 * x + 2 * bw), (4 * y + 2 * bh)), (2 * bw, 2 * bh), 0, 0, 360, 255, -1)
    rgba[..., 3] = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    rgba[rgba[..., 3] > 0, :3] = colour
    return rgba


def blue_box(img):
    """Bounding box of the product's pixels (blue, unlike the grey shadow and background)."""
    solid = (img[..., 2].astype(int) - img[..., 0]) > 85  # half of the product's blue - red contrast
    return cv2.boundingRect(cv2.findNonZero(solid.astype(np.uint8)))


@pytest.mark.parametrize("size", [(1000, 1000), (1200, 600), (600, 1200)])
def test_fill_and_centring(step, size):
    w, h = size
    out = run(step, cutout(), sizes=[f"{w}x{h}"], shadow=False)
    img = out.images[0].pixels
    assert img.shape == (h, w, 3)
    x, y, bw, bh = blue_box(img)
    # The tall product (150x400) is limited by the canvas height unless the canvas is much taller.
    limit = min(w / 150, h / 400)
    span = (bh / h) if limit == h / 400 else (bw / w)
    assert span == pytest.approx(0.85, abs=0.01)
    assert abs((x + bw / 2) - w / 2) <= 1.5 and abs((y + bh / 2) - h / 2) <= 1.5


def test_background_exact_far_from_product_and_shadow(step):
    out = run(step, cutout(), sizes=["900x900"], background="#336699")
    img = out.images[0].pixels
    x, y, bw, bh = blue_box(img)
    far = np.ones(img.shape[:2], bool)
    m = int(0.1 * max(bw, bh))  # the shadow reaches less than 10% of the product's size
    far[max(0, y - m) : y + bh + m, max(0, x - m) : x + bw + m] = False
    assert (img[far] == (0x33, 0x66, 0x99)).all()
    assert out.info["background"] == "#336699"


def test_shadow_darker_just_below_product_and_absent_without(step):
    for shadow in (True, False):
        img = run(step, cutout(), sizes=["1000x1000"], shadow=shadow).images[0].pixels
        x, y, bw, bh = blue_box(img)
        below = img[y + bh + 3 : y + bh + 12, x + bw // 2 - 5 : x + bw // 2 + 5].astype(int)
        if shadow:
            assert below.max() <= 255 - 30, below.max()  # clearly darker than the white floor
            assert (below[..., 0] == below[..., 2]).all()  # grey, not a smear of the product
        else:
            assert (below == 255).all()


def test_premultiplied_edges_have_no_dark_fringe(step):
    # A near-white product whose transparent pixels are black: straight-alpha resizing would
    # pull that black into the edge and leave a dark halo on the white background.
    cut = cutout(colour=(250, 250, 250), under=(0, 0, 0))
    for size in ("200x200", "2000x2000"):  # shrinking and enlarging
        img = run(step, cut, sizes=[size], shadow=False).images[0].pixels
        assert img.min() >= 249


def test_multiple_sizes_and_formats(step):
    out = run(step, cutout(), sizes=["800x800", [600, 900], " 1200 X 500 "], format="png")
    assert [im.params for im in out.images] == [{"size": "800x800"}, {"size": "600x900"}, {"size": "1200x500"}]
    assert [im.pixels.shape for im in out.images] == [(800, 800, 3), (900, 600, 3), (500, 1200, 3)]
    assert all(im.kind == "catalog" and im.format == "png" for im in out.images)
    assert set(out.info["product_boxes"]) == {"800x800", "600x900", "1200x500"}


def test_trim_ignores_faint_matting_noise(step):
    cut = cutout()
    cut[5, 5, 3] = 3  # a stray near-transparent pixel far from the product
    img = run(step, cut, sizes=["1000x1000"], shadow=False).images[0].pixels
    assert blue_box(img)[3] == pytest.approx(850, abs=10)


def test_empty_alpha_is_a_permanent_error(step):
    cut = cutout()
    cut[..., 3] = 0
    with pytest.raises(PermanentError, match="alpha channel is empty"):
        run(step, cut)


def test_rgb_cutout_is_rejected(step):
    with pytest.raises(PermanentError, match="RGBA"):
        run(step, cutout()[..., :3].copy())


@pytest.mark.parametrize(
    "params",
    [{"sizes": ["100"]}, {"sizes": ["0x100"]}, {"sizes": [[10]]}, {"sizes": ["20000x100"]}, {"sizes": []},
     {"sizes": ["100x100", [100, 100]]}, {"sizes": [[1.5, 100]]}, {"background": "white"}, {"format": "gif"},
     {"fill": 0}, {"fill": 1.2}, {"shadow_opacity": 2}],
)  # fmt: skip
def test_bad_params_are_rejected(params):
    with pytest.raises(InvalidParams):
        CatalogGeneratorStep.spec.parse_params(params)


def test_defaults():
    p = CatalogGeneratorStep.spec.parse_params({})
    assert p.sizes == ["1600x1600"] and p.fill == 0.85 and p.background == "#FFFFFF" and p.shadow


def test_real_garments_fill_and_clean_background(step):
    if not C1.is_dir():
        pytest.skip(f"VITON garments not found at {C1}")
    for path in sorted((C1 / "cloth").glob("*.jpg"))[:5]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(C1 / "cloth-mask" / path.name), cv2.IMREAD_GRAYSCALE)
        cut = np.dstack([rgb, np.where(mask >= 128, 255, 0).astype(np.uint8)])
        out = run(step, cut, sizes=["1000x1000", "800x1200"])
        for im, (w, h) in zip(out.images, [(1000, 1000), (800, 1200)]):
            x, y, bw, bh = out.info["product_boxes"][im.params["size"]]
            assert max(bw / w, bh / h) == pytest.approx(0.85, abs=0.01)
            assert abs(x + bw / 2 - w / 2) <= 1 and abs(y + bh / 2 - h / 2) <= 1
            band = int(0.1 * max(bw, bh))  # the shadow reaches less than 10% of the product's size
            outside = np.ones((h, w), bool)
            outside[max(0, y - band) : y + bh + band, max(0, x - band) : x + bw + band] = False
            assert (im.pixels[outside] == 255).all(), path.name
            inside = im.pixels[y : y + bh, x : x + bw]
            assert (inside != 255).any(axis=2).mean() > 0.3  # the garment is really there
