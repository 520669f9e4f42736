"""The gRPC side of a step: request in, decoded images, the step, encoded outputs back.

Error mapping: bad input (not an image, too large, bad parameters, missing mask) is
INVALID_ARGUMENT with the reason; a missing model file FAILED_PRECONDITION; storage outages
UNAVAILABLE; anything else INTERNAL. Never UNKNOWN.
"""

from __future__ import annotations

import logging
import time

import grpc

from studioline.shared.errors import ModelMissing, PermanentError, TransientError
from studioline.shared.imageio import decode_image, sha256_hex
from studioline.shared.metrics import IMAGES
from studioline.shared.runtime import (
    StepRunner,
    check_same_size,
    decode_input,
    dict_to_struct,
    encode_outputs,
    store_outputs,
    struct_to_dict,
)
from studioline.shared.step import StepInput, StepOutput
from studioline.v1 import job_pb2, steps_pb2

log = logging.getLogger(__name__)


class StepServicerBase:
    """Mixed into each service's generated servicer class; the RPC method calls `handle`."""

    def __init__(self, runner: StepRunner, settings, storage):
        self.runner = runner
        self.step_cls = type(runner.step)
        self.settings = settings
        self.storage = storage

    def _read(self, image: steps_pb2.ImageInput, what: str) -> bytes:
        which = image.WhichOneof("source")
        if which == "data":
            if len(image.data) > self.settings.limits.inline_max_bytes:
                raise PermanentError(
                    f"{what}: inline image of {len(image.data)} bytes exceeds the inline limit of "
                    f"{self.settings.limits.inline_max_bytes}; pass an S3 reference instead",
                    "too_large",
                )
            return image.data
        if which == "ref":
            if self.storage is None:
                raise PermanentError(f"{what}: S3 references need storage, which this server lacks", "no_storage")
            if not image.ref.bucket or not image.ref.key:
                raise PermanentError(f"{what}: reference needs bucket and key", "invalid_ref")
            return self.storage.get(image.ref.bucket, image.ref.key)
        raise PermanentError(f"{what}: no image given (set data or ref)", "no_image")

    def _step_input(self, request: steps_pb2.StepRequest) -> tuple[StepInput, str, list[str]]:
        """The step's input, the source's sha256 and the inputs' (which name stored outputs)."""
        params = self.step_cls.parse_params(struct_to_dict(request.params))
        limits = self.settings.limits
        decoded = decode_image(self._read(request.image, "image"), limits)
        image = decoded.pixels
        allowed = set(self.step_cls.consumes) | set(self.step_cls.optional_inputs)
        unknown = set(request.inputs) - allowed
        if unknown:
            raise PermanentError(
                f"{self.step_cls.name} takes no input(s) {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(sorted(allowed)) or 'none'}",
                "invalid_input",
            )
        raw_inputs = {kind: self._read(img, kind) for kind, img in sorted(request.inputs.items())}
        inputs = {kind: decode_input(kind, data, limits) for kind, data in raw_inputs.items()}
        self.step_cls.check_inputs(inputs)
        check_same_size(image, inputs)
        input_shas = [sha256_hex(data) for data in raw_inputs.values()]
        return StepInput(image=image, params=params, inputs=inputs), decoded.sha256, input_shas

    def execute(self, request: steps_pb2.StepRequest, context) -> tuple[StepOutput, dict]:
        """Runs the step; returns its output and the basis of stored outputs' keys."""
        try:
            item, source_sha, input_shas = self._step_input(request)
            (result,), per_item = self.runner.run([item], source="grpc")
            if isinstance(result, Exception):
                raise result
            IMAGES.labels(self.step_cls.name, "grpc", "ok").inc()
            basis = {"params": item.params.model_dump(mode="json"), "inputs": [source_sha, *input_shas]}
            return result, basis
        except Exception as exc:
            IMAGES.labels(self.step_cls.name, "grpc", "error").inc()
            self._abort(context, exc)

    def _abort(self, context, exc: Exception):
        if isinstance(exc, PermanentError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code}: {exc}")
        if isinstance(exc, ModelMissing):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if isinstance(exc, TransientError):
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        log.exception("step failed on a gRPC request")
        context.abort(grpc.StatusCode.INTERNAL, f"{self.step_cls.name} failed: {type(exc).__name__}: {exc}")

    def handle(self, request: steps_pb2.StepRequest, context) -> steps_pb2.StepReply:
        start = time.perf_counter()
        result, basis = self.execute(request, context)
        reply = steps_pb2.StepReply()
        try:
            encoded = encode_outputs(result)
            if request.output_bucket:
                arts = store_outputs(
                    self.storage, request.output_bucket, "grpc", basis["inputs"][0], self.step_cls.name, basis, encoded
                )
                for art, out in zip(arts, encoded):
                    reply.outputs.add(kind=out.kind, params=art.params, ref=art.ref, content_type=out.content_type,
                                      width=out.width, height=out.height)
            else:
                for out in encoded:
                    reply.outputs.add(kind=out.kind, params=dict_to_struct(out.params), data=out.data,
                                      content_type=out.content_type, width=out.width, height=out.height)
            reply.info.update(_jsonable(result.info))
        except Exception as exc:
            self._abort(context, exc)
        reply.ms = (time.perf_counter() - start) * 1000
        return reply


def _jsonable(value):
    """Step info as JSON-able values for a protobuf Struct (numpy scalars and tuples included)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def classification_message(info: dict) -> job_pb2.Classification:
    return job_pb2.Classification(
        image_type=info["image_type"],
        confidence=float(info["confidence"]),
        scores={k: float(v) for k, v in info.get("scores", {}).items()},
    )
