"""Models behind one interface, one class per model, listed by name in shared/models/registry.py.

Lifecycle (as in Triton's python backend): load() once, warmup() once, predict() many times,
close() at shutdown. predict() loads the model on first use (once, under a lock), so every
model behaves the same however it was opened. A model's name is also its pack's name
(shared/models/packs.py): the files it reads are that pack's files. The model store resolves
them; a missing file is an error that names the command that installs it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from studioline.shared.models.device import torch_device_for
from studioline.shared.models.packs import pack_files
from studioline.shared.models.store import ModelStore

log = logging.getLogger(__name__)


class Model(ABC):
    name: ClassVar[str]
    # The store files its pack yields; set from the pack named like the model (__init_subclass__).
    files: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete model, not an intermediate base such as OnnxModel
            cls.files = pack_files(cls.name)

    def __init__(self, store: ModelStore, *, device: str = "auto", threads: int = 2):
        self.store = store
        self.device = device
        self.threads = threads
        self.loaded = False
        # gRPC workers may call predict on a model nobody loaded yet at the same time.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Reads the model's files; does nothing when they are loaded already."""
        with self._lock:
            if not self.loaded:
                self._load()
                self.loaded = True

    def warmup(self) -> None:
        self.predict([np.full((320, 320, 3), 200, np.uint8)])

    def predict(self, images: list[np.ndarray]) -> Any:
        """Takes HxWx3 RGB uint8 images and returns one result per image (a list, or arrays with
        one row per image; see each model's _predict). Loads the model on first use."""
        if not self.loaded:
            self.load()
        return self._predict(images)

    def close(self) -> None:
        with self._lock:
            self._close()
            self.loaded = False

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _predict(self, images: list[np.ndarray]) -> Any: ...

    def _close(self) -> None:
        """Releases what _load holds."""


class OnnxModel(Model):
    """A model served by onnxruntime: CUDA when present and asked for, else the CPU."""

    session = None
    # Files exported with the batch fixed at 1 get a symbolic batch axis on load, so a batch
    # runs as one call (needs the onnx package; without it batches run one image at a time).
    make_batch_dynamic: ClassVar[bool] = False

    @property
    def onnx_file(self) -> str:
        """The store file the session runs: the pack's file, unless a model exports its own."""
        return self.files[0]

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        path = self.store.path(self.onnx_file)
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

    def _close(self) -> None:
        self.session = None


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
