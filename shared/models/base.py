"""Models behind one interface, one class per model, registered by name.

Lifecycle (as in Triton's python backend): load() once, warmup() once, predict() many times,
close() at shutdown. The model store resolves the weight files; a missing file is an error
that names the command that installs it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from studioline.shared.models.device import torch_device_for
from studioline.shared.models.store import ModelStore

log = logging.getLogger(__name__)
_REGISTRY: dict[str, type["Model"]] = {}


def register_model(cls: type["Model"]) -> type["Model"]:
    if cls.name in _REGISTRY:
        raise ValueError(f"model name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type["Model"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered_models() -> list[str]:
    return sorted(_REGISTRY)


class Model(ABC):
    name: ClassVar[str]
    # Files it reads from the model store (store names, see shared/models/packs.py).
    files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, store: ModelStore, *, device: str = "auto", threads: int = 2):
        self.store = store
        self.device = device
        self.threads = threads
        self.loaded = False

    @abstractmethod
    def load(self) -> None: ...

    def warmup(self) -> None:
        self.predict([np.full((320, 320, 3), 200, np.uint8)])

    @abstractmethod
    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Takes HxWx3 RGB uint8 images, returns one array per image."""

    def close(self) -> None:
        self.loaded = False


class OnnxModel(Model):
    """A model served by onnxruntime: CUDA when present and asked for, else the CPU."""

    session = None
    # Files exported with the batch fixed at 1 get a symbolic batch axis on load, so a batch
    # runs as one call (needs the onnx package; without it batches run one image at a time).
    make_batch_dynamic: ClassVar[bool] = False

    def load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        path = self.store.path(self.files[0])
        graph = with_dynamic_batch(path) if self.make_batch_dynamic else None
        self.session = ort.InferenceSession(
            graph or str(path), sess_options=opts, providers=onnx_providers(self.device)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.dynamic_batch = not isinstance(self.session.get_inputs()[0].shape[0], int)
        # On the CPU a stacked batch is no faster per image than a loop (the cores are busy
        # either way) and needs more memory; accelerators are fed whole batches.
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.stack_batches = self.dynamic_batch and not on_cpu
        self.torch_device = torch_device_for(self.session)
        self.loaded = True

    def close(self) -> None:
        self.session = None
        super().close()


def with_dynamic_batch(path) -> bytes | None:
    """The ONNX graph at `path` with its inputs' and outputs' first axis made symbolic, or None
    where it already is (or the onnx package is not installed)."""
    try:
        import onnx
    except ImportError:
        log.warning("onnx is not installed: %s keeps its fixed batch of 1", path)
        return None
    model = onnx.load(str(path))
    first_axes = [v.type.tensor_type.shape.dim[0] for v in [*model.graph.input, *model.graph.output]]
    if not any(axis.HasField("dim_value") for axis in first_axes):
        return None
    for axis in first_axes:
        axis.dim_param = "batch"
    # Inferred shapes of inner tensors carry the old batch; onnxruntime infers them again.
    del model.graph.value_info[:]
    return model.SerializeToString()


def onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available and _cuda_usable():
        gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "tensorrt" and "TensorrtExecutionProvider" in available:
            return ["TensorrtExecutionProvider", *gpu]
        return gpu
    if device in ("cuda", "tensorrt"):
        raise RuntimeError(f"device={device} asked for, but onnxruntime cannot use CUDA on this machine")
    return ["CPUExecutionProvider"]


def _cuda_usable() -> bool:
    """onnxruntime-gpu lists CUDA even where no GPU or CUDA library exists; check for a device."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
