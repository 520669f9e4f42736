"""The one job path both front ends share: what a step reads, how inputs decode and are checked,
how outputs are keyed, and how a job moves on.

The Kafka loop (worker.py) reads the bytes a job points at, the gRPC front (servicer.py) the
bytes a request carries; from there both call `prepare`, run the step through the batcher, and
turn its typed result into the same report (`report_message`). Only the Kafka loop moves a job
on (`advance`); a routing step's result goes to the router there and in the gRPC reply alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from studioline.shared.errors import ImageRejected, InvalidEvent, InvalidParams, MissingInput, PermanentError
from studioline.shared.imageio import ENCODED_BYTES_PER_PIXEL, Header, decode_image, decode_mask, read_header, sha256_hex
from studioline.shared.memory import ByteBudget, Reservation, budget_bytes, megabytes
from studioline.shared.spec import StepSpec
from studioline.shared.step import StepInput, StepOutput, StepParams
from studioline.shared.steps import artifact_kinds, working_kinds
from studioline.v1 import job_pb2


# Channels of the 8-bit array an artifact kind's `pixels` decodes to.
_CHANNELS = {"mask": 1, "rgb": 3, "rgba": 4}


@dataclass
class Blob:
    """An input's bytes as read, and which artifact kind they are (None: the source photo)."""

    data: bytes
    kind: str | None = None


@dataclass
class Prepared:
    item: StepInput
    key_basis: dict  # what names the step's outputs: its parameters and its inputs' digests
    source: job_pb2.ImageRef | None = None  # facts about the source photo, when it was the image
    reservation: Reservation | None = None  # the memory budget's bytes this request holds

    def release(self) -> None:
        """Gives the request's bytes back to the memory budget: once its outputs are encoded,
        or it failed (idempotent)."""
        if self.reservation is not None:
            self.reservation.release()


# ---- parameters --------------------------------------------------------------------------


def struct_params(struct: Struct) -> dict:
    """A Struct (a recipe's or a gRPC request's parameters) as plain values, with whole numbers
    as ints: a Struct keeps every number as a double, and [800, 1000] must stay integers."""
    try:
        return _whole_numbers(MessageToDict(struct))
    except ValueError as exc:  # NaN or Infinity: no parameter takes them
        raise InvalidParams(f"parameters hold a number that is NaN or infinite ({exc})") from exc


def _whole_numbers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def planned_params(spec: StepSpec, job: job_pb2.JobEvent) -> StepParams:
    """The parameters the slip gives this step; a slip that points elsewhere is misrouted."""
    slip = job.slip
    if slip.position >= len(slip.steps) or slip.steps[slip.position].step != spec.name:
        raise PermanentError(
            f"routing slip does not point at {spec.name} (position {slip.position} of "
            f"{[s.step for s in slip.steps]})",
            "misrouted",
        )
    return spec.load_params(slip.steps[slip.position].params_json)


def start_slip(job: job_pb2.JobEvent, spec: StepSpec) -> None:
    """A new job's slip: the routing step alone, with the recipe's parameters for it."""
    raw = struct_params(job.recipe.step_params[spec.name]) if spec.name in job.recipe.step_params else {}
    params = spec.parse_params(raw)
    job.slip.Clear()
    job.slip.steps.add(step=spec.name, params_json=params.model_dump_json())


# ---- inputs ------------------------------------------------------------------------------


def reads_for(spec: StepSpec, job: job_pb2.JobEvent) -> tuple[str | None, job_pb2.ImageRef, dict[str, job_pb2.ImageRef]]:
    """Which objects the step reads for this job: the working image (the newest artifact of a
    working kind, else the source photo) and the newest artifact of each kind it takes.
    Returns (the working image's kind, None for the source photo; its ref; the inputs' refs)."""
    working = _newest(job, working_kinds())
    if working is None:
        image_kind, image_ref = None, job.source
    else:
        image_kind, image_ref = working.kind, working.ref
    inputs = {}
    for kind in spec.inputs:
        art = _newest(job, {kind})
        if art is not None:
            inputs[kind] = art.ref
    return image_kind, image_ref, inputs


def prepare(
    spec: StepSpec, params: StepParams, image: Blob, inputs: dict[str, Blob], limits, job_id: str = "",
    budget: ByteBudget | None = None,
) -> Prepared:
    """Decodes the image and inputs by their kinds and checks them against the spec: no input
    it does not take, none it needs missing, sizes that match where the kinds keep the source's
    geometry. Raises PermanentError naming the problem.

    Before any pixel is decoded, the request's memory is estimated from the headers
    (`memory_estimate`): over the service's whole budget it is rejected (over_budget). With a
    `budget` (the process's, memory.process_budget) the request holds its bytes from here until
    the caller's `Prepared.release()`, after its outputs are encoded, so that requests in flight
    together never exceed it; waiting for them may end in MemoryBusy (transient)."""
    unknown = set(inputs) - set(spec.inputs)
    if unknown:
        raise PermanentError(
            f"{spec.name} takes no input(s) {', '.join(sorted(unknown))}; it takes {', '.join(spec.inputs) or 'none'}",
            "invalid_input",
        )
    missing = [k for k in spec.consumes if k not in inputs]
    if missing:
        raise MissingInput(f"{spec.name} needs the artifact(s) {', '.join(missing)}, which the job does not carry")
    kinds = artifact_kinds()
    headers = [(read_header(image.data, limits), "rgb" if image.kind is None else kinds[image.kind].pixels)]
    headers += [(read_header(blob.data, limits), kinds[kind].pixels) for kind, blob in sorted(inputs.items())]
    need = memory_estimate(spec, params, headers)
    capacity = budget.capacity if budget is not None else budget_bytes(limits)
    if need > capacity:
        h = headers[0][0]
        raise ImageRejected(
            f"{spec.name} would need about {megabytes(need)} of memory for this {h.width}x{h.height} {h.format} "
            f"({h.mode}) image{' and its inputs' if inputs else ''}, over its memory budget of {megabytes(capacity)} "
            "(limits.memory_fraction of the container's memory limit): send a smaller image",
            "over_budget",
        )
    reservation = budget.acquire(need, limits.memory_wait_s) if budget is not None else None
    try:
        source = None
        if image.kind is None:
            decoded = decode_image(image.data, limits)
            pixels, image_sha = decoded.pixels, decoded.sha256
            source = job_pb2.ImageRef(
                sha256=decoded.sha256, width=decoded.width, height=decoded.height,
                content_type=f"image/{decoded.format.lower()}",
            )
        else:
            pixels, image_sha = decode_kind(image.kind, image.data, limits), sha256_hex(image.data)
        decoded_inputs = {kind: decode_kind(kind, blob.data, limits) for kind, blob in sorted(inputs.items())}
        _check_geometry(image.kind, pixels, decoded_inputs)
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise
    key_basis = {
        "params": params.model_dump(mode="json"),
        "inputs": [image_sha, *(sha256_hex(blob.data) for _, blob in sorted(inputs.items()))],
    }
    item = StepInput(image=pixels, params=params, inputs=decoded_inputs, job_id=job_id)
    return Prepared(item, key_basis, source, reservation)


def memory_estimate(spec: StepSpec, params: StepParams, headers: list[tuple[Header, str]]) -> int:
    """Bytes a request takes at its peak, from its images' headers (the working image first) and
    how each decodes (an artifact kind's `pixels`): Pillow's decoded buffers, and the step's
    working memory, its memory factors times the 8-bit arrays it is handed and writes (as many
    pixels as its parameters' output_pixels says)."""
    decoded = sum(h.decoded_bytes for h, _ in headers)
    handed = sum(h.pixel_bytes(pixels) for h, pixels in headers)
    written = 0
    if spec.produces:
        image = headers[0][0]
        channels = max(_CHANNELS[kind.pixels] for kind in spec.produces)
        written = params.output_pixels(image.width, image.height) * channels
    return decoded + int(spec.memory_factor * handed + spec.output_factor * written)


def decode_kind(kind: str, data: bytes, limits) -> np.ndarray:
    """An artifact's pixels as its kind declares them."""
    pixels = artifact_kinds()[kind].pixels
    if pixels == "mask":
        return decode_mask(data, limits)
    # An "rgba" kind keeps its alpha even where it hides nothing: it is RGBA by definition.
    return decode_image(data, limits, alpha="always" if pixels == "rgba" else "auto").pixels


def _check_geometry(image_kind: str | None, image: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
    """Inputs made pixel for pixel over the source must match the image, as long as the image
    itself keeps the source's geometry (a step after an upscale resizes them itself)."""
    kinds = artifact_kinds()
    if image_kind is not None and not kinds[image_kind].source_geometry:
        return
    for kind, arr in inputs.items():
        if kinds[kind].source_geometry and arr.shape[:2] != image.shape[:2]:
            raise PermanentError(
                f"input {kind!r} is {arr.shape[1]}x{arr.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}: they must match",
                "size_mismatch",
            )


def _newest(job: job_pb2.JobEvent, kinds) -> job_pb2.Artifact | None:
    for art in reversed(job.artifacts):
        if art.kind in kinds:
            return art
    return None


# ---- results -----------------------------------------------------------------------------


def check_output(spec: StepSpec, output: StepOutput) -> None:
    """A step writes only the kinds, in the formats, its spec declares."""
    kinds = {k.name: k for k in spec.produces}
    for img in output.images:
        kind = kinds.get(img.kind)
        if kind is None or img.format not in kind.formats:
            raise PermanentError(
                f"{spec.name} wrote a {img.format} {img.kind!r}, which its spec does not declare", "step_failed"
            )


def reply_bytes(spec: StepSpec, params: StepParams, width: int, height: int) -> int:
    """About how many bytes at most the step's encoded outputs take for this image."""
    if not spec.produces:
        return 0
    kind = spec.produces[0]
    fmt = getattr(params, "format", kind.formats[0])
    return int(params.output_pixels(width, height) * ENCODED_BYTES_PER_PIXEL[fmt, _CHANNELS[kind.pixels]])


def report_message(spec: StepSpec, output: StepOutput) -> job_pb2.StepReport:
    """The step's report as the done event and the gRPC reply carry it."""
    report = job_pb2.StepReport(
        step=spec.name,
        quality_note=output.quality_note,
        needs_review=output.needs_review,
        warnings=output.warnings,
        refusals=output.refusals,
    )
    report.info.update(jsonable(output.info))
    if output.quality is not None:
        report.quality = float(output.quality)
    return report


def classification_message(output: StepOutput) -> job_pb2.Classification:
    route = output.route
    if route is None:
        raise PermanentError("a routing step returned no route", "step_failed")
    return job_pb2.Classification(
        image_type=route.image_type,
        confidence=float(route.confidence),
        scores={k: float(v) for k, v in route.scores.items()},
    )


def advance(job: job_pb2.JobEvent, spec: StepSpec, output: StepOutput, artifacts, router=None) -> str | None:
    """Records the step's artifacts and report on the job and moves its slip on. A routing
    step's route is planned into the rest of the slip here. Returns the next step's name, or
    None when the job is done."""
    job.artifacts.extend(artifacts)
    job.reports.append(report_message(spec, output))
    if spec.routes:
        route(job, classification_message(output), router)
    if output.needs_review:
        job.classification.needs_review = True
    job.slip.position += 1
    job.attempt = 0
    if job.slip.position < len(job.slip.steps):
        return job.slip.steps[job.slip.position].step
    return None


def route(job: job_pb2.JobEvent, classification: job_pb2.Classification, router) -> None:
    """The router's plan after the routing step: the chain for the image's type (or the
    recipe's), appended to the slip behind the routing step."""
    decision = router.decide(classification.image_type, classification.confidence, job.recipe.chain)
    classification.needs_review = decision.needs_review
    job.classification.CopyFrom(classification)
    plan = router.plan(decision.chain, job.recipe)
    del job.slip.steps[job.slip.position + 1 :]
    job.slip.chain = plan.chain
    job.slip.steps.extend(plan.steps)


def jsonable(value):
    """Step info as JSON values for a protobuf Struct (numpy scalars and tuples included)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def params_of(planned: job_pb2.PlannedStep) -> dict:
    """A planned step's parameters as a dict (for reports and pages)."""
    try:
        return json.loads(planned.params_json or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"planned step {planned.step} has parameters that are not JSON: {exc}") from exc
