"""Models with a batch axis made dynamic on load: a stacked batch gives the batch-1 results;
and the one lifecycle every model shares (load on first predict, once)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from studioline.shared.config import PROJECT_ROOT
from studioline.shared.models.base import with_dynamic_batch
from studioline.shared.models.registry import model_class, registered_models
from studioline.shared.models.store import ModelStore
from studioline.shared.models.u2net import U2Netp

DEMO = PROJECT_ROOT / "demo" / "images"
# onnxruntime may pick other kernels for batch 4 than for batch 1: float32 rounding only.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    paths = sorted(DEMO.glob("*.jpg"))[:4]
    assert len(paths) == 4, f"the committed demo photos are missing from {DEMO}"
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_u2netp_gets_a_dynamic_batch_axis_and_stacked_batches_match_batch_one(photos):
    model = U2Netp(ModelStore(PROJECT_ROOT / ".models"), device="cpu", threads=1)
    model.load()
    assert model.dynamic_batch
    assert not model.stack_batches  # on the CPU a batch runs as a loop by default
    one_by_one = model.predict(photos)
    model.stack_batches = True
    stacked = model.predict(photos)
    model.close()
    assert [m.shape for m in stacked] == [p.shape[:2] for p in photos]
    for a, b in zip(one_by_one, stacked):
        assert float(np.abs(a - b).max()) < TOLERANCE
        assert 0.02 < float((a > 0.5).mean()) < 0.98  # real masks, not blanks


def test_a_graph_whose_batch_is_already_dynamic_is_left_alone():
    # mobilenet_v2.onnx is exported by us with a symbolic batch axis.
    assert with_dynamic_batch(PROJECT_ROOT / ".models" / "mobilenet_v2.onnx") is None


def test_the_device_path_gives_the_numpy_path_masks_within_tolerance(photos):
    """The GPU path's torch pre/post-processing, run with torch on the CPU: antialiased bilinear
    instead of OpenCV's area resize moves edge pixels a little, nothing more."""
    pytest.importorskip("torch")
    from studioline.shared.models.device import decode_jpegs, u2net_predict

    model = U2Netp(ModelStore(PROJECT_ROOT / ".models"), device="cpu", threads=1)
    model.load()
    reference = model.predict(photos)
    on_device = u2net_predict(model, photos, "cpu")
    model.stack_batches = True
    stacked = u2net_predict(model, photos, "cpu")
    model.close()
    for a, b, c in zip(reference, on_device, stacked):
        assert a.shape == b.shape and b.dtype == np.float32
        assert float(np.abs(a - b).mean()) < 0.005 and float(np.abs(a - b).max()) < 0.25
        assert float(((a > 0.5) & (b > 0.5)).sum() / ((a > 0.5) | (b > 0.5)).sum()) > 0.99
        assert float(np.abs(b - c).max()) < TOLERANCE
    # Without a usable torchvision on CUDA, JPEGs are decoded by OpenCV: the same pixels as cv2.
    jpeg = sorted(DEMO.glob("*.jpg"))[0]
    (decoded,) = decode_jpegs([jpeg.read_bytes()], "cpu")
    assert np.array_equal(decoded, photos[0])


def test_predict_loads_once_on_first_use_however_many_threads_ask(photos):
    loads = []

    class CountedU2Netp(U2Netp):
        def _load(self) -> None:
            loads.append(1)
            time.sleep(0.05)  # a slow load: the other threads arrive while it runs
            super()._load()

    model = CountedU2Netp(ModelStore(PROJECT_ROOT / ".models"), device="cpu", threads=1)
    with ThreadPoolExecutor(len(photos)) as pool:
        masks = list(pool.map(lambda photo: model.predict([photo])[0], photos))
    assert len(loads) == 1 and model.loaded
    assert [m.shape for m in masks] == [p.shape[:2] for p in photos]
    model.close()
    assert not model.loaded


def test_every_installed_model_loads_on_its_first_predict():
    """The same lifecycle for every registered model: warmup() (a predict) on a model nobody
    loaded loads it; close() unloads it."""
    store = ModelStore(PROJECT_ROOT / ".models")
    installed = [n for n in registered_models() if all(store.has(f) for f in model_class(n).files)]
    assert {"u2netp", "vit_s_focus", "mobilenet_v2", "mediapipe_pose"} <= set(installed), "run `make models`"
    for name in installed:
        model = model_class(name)(store, device="cpu", threads=1)
        assert not model.loaded
        model.warmup()
        assert model.loaded, name
        model.close()
        assert not model.loaded, name
