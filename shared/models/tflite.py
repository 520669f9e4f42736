"""TensorFlow Lite models run by ai-edge-litert (Google's LiteRT interpreter, XNNPACK on the CPU).

MediaPipe's Python package cannot be installed beside this project's protobuf, but its .tflite
models run as they are in the LiteRT interpreter; the graph logic around them (anchors, crops,
projections) lives in the model classes that use them.
"""

from __future__ import annotations

import numpy as np

from studioline.shared.models.base import Model


class TfliteModel(Model):
    """A model made of one or more .tflite files (`files`), one interpreter each."""

    interpreters: dict[str, object] | None = None

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreters = {}
        for name in self.files:
            interpreter = Interpreter(model_path=str(self.store.path(name)), num_threads=self.threads)
            interpreter.allocate_tensors()
            self.interpreters[name] = interpreter

    def invoke(self, file: str, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one interpreter on a float32 NHWC batch of one; returns its outputs by tensor name."""
        interpreter = self.interpreters[file]
        (inp,) = interpreter.get_input_details()
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(tensor, np.float32))
        interpreter.invoke()
        return {out["name"]: interpreter.get_tensor(out["index"]) for out in interpreter.get_output_details()}

    def _close(self) -> None:
        self.interpreters = None
