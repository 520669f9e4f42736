"""Models with a batch axis made dynamic on load: a stacked batch gives the batch-1 results."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from studioline.shared.config import PROJECT_ROOT
from studioline.shared.models.base import with_dynamic_batch
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
