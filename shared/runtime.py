"""What the Kafka loop and the gRPC servicers share: running a step on decoded images under
one lock, and turning step outputs into stored artifacts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from studioline.shared.errors import PermanentError
from studioline.shared.events import artifact_key
from studioline.shared.imageio import CONTENT_TYPES, DecodedImage, decode_image, decode_mask, encode_image, sha256_hex
from studioline.shared.metrics import BATCH_SIZE, STEP_SECONDS
from studioline.shared.step import Step, StepInput, StepOutput
from studioline.v1 import job_pb2

# Artifact kinds read as one-channel masks; everything else is decoded as RGB(A).
MASK_KINDS = {"mask", "fill_mask"}


class StepRunner:
    """Runs a loaded step for whichever front end asks. The lock keeps one batch on the model
    at a time: on a CPU the cores are already busy, and a GPU batcher takes its place later."""

    def __init__(self, step: Step):
        self.step = step
        self._lock = threading.Lock()

    def run(self, items: list[StepInput], source: str) -> tuple[list[StepOutput | Exception], float]:
        """Returns the per-item results and the compute seconds per item."""
        with self._lock:
            start = time.perf_counter()
            results = self.step.run_batch(items)
            per_item = (time.perf_counter() - start) / max(len(items), 1)
        BATCH_SIZE.labels(self.step.name).observe(len(items))
        for _ in items:
            STEP_SECONDS.labels(self.step.name, source).observe(per_item)
        return results, per_item


def decode_input(kind: str, data: bytes, limits) -> np.ndarray:
    if kind in MASK_KINDS:
        return decode_mask(data, limits)
    return decode_image(data, limits).pixels


def check_same_size(image: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    for kind, arr in inputs.items():
        if arr.shape[:2] != image.shape[:2]:
            raise PermanentError(
                f"input {kind!r} is {arr.shape[1]}x{arr.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}: they must match",
                "size_mismatch",
            )


def fill_source_ref(ref: job_pb2.ImageRef, decoded: DecodedImage) -> None:
    ref.sha256 = ref.sha256 or decoded.sha256
    ref.width, ref.height = decoded.width, decoded.height
    if not ref.content_type:
        ref.content_type = f"image/{decoded.format.lower()}"


@dataclass
class EncodedOutput:
    kind: str
    params: dict
    data: bytes
    content_type: str
    width: int
    height: int
    name: str  # file name inside the step's output folder


def encode_outputs(output: StepOutput) -> list[EncodedOutput]:
    encoded = []
    seen: dict[str, int] = {}
    for img in output.images:
        index = seen.get(img.kind, 0)
        seen[img.kind] = index + 1
        ext = "jpg" if img.format == "jpeg" else img.format
        suffix = "-".join(f"{v}" for _, v in sorted(img.params.items())).replace(":", "x").replace("/", "_")
        name = f"{img.kind}{'-' + suffix if suffix else ('-' + str(index) if index else '')}.{ext}"
        encoded.append(
            EncodedOutput(
                kind=img.kind,
                params=dict(img.params),
                data=encode_image(img.pixels, img.format),
                content_type=CONTENT_TYPES[img.format],
                width=int(img.pixels.shape[1]),
                height=int(img.pixels.shape[0]),
                name=name,
            )
        )
    return encoded


def store_outputs(
    storage, bucket: str, tenant: str, source_sha256: str, step: str, key_basis: dict, outputs: list[EncodedOutput]
) -> list[job_pb2.Artifact]:
    """Writes outputs under deterministic keys and returns their artifacts."""
    artifacts = []
    for out in outputs:
        key = artifact_key(tenant, source_sha256, step, key_basis, out.name)
        storage.put(bucket, key, out.data, out.content_type)
        artifacts.append(
            job_pb2.Artifact(
                kind=out.kind,
                step=step,
                params=dict_to_struct(out.params),
                ref=job_pb2.ImageRef(
                    bucket=bucket,
                    key=key,
                    sha256=sha256_hex(out.data),
                    content_type=out.content_type,
                    width=out.width,
                    height=out.height,
                ),
            )
        )
    return artifacts


def struct_to_dict(struct: Struct) -> dict:
    return MessageToDict(struct)


def dict_to_struct(values: dict) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct
