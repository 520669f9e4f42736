"""The one job path: what Kafka and gRPC share from bytes to a decoded, checked step input, and
how a result moves a job on."""

import io
import json

import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from PIL import Image

from studioline.shared import jobpath, steps
from studioline.shared.config import LimitSettings, Settings
from studioline.shared.errors import InvalidParams, MissingInput, PermanentError
from studioline.shared.routing import Router
from studioline.shared.step import OutputImage, Route, StepOutput
from studioline.v1 import job_pb2

LIMITS = LimitSettings()


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


PHOTO = png(np.full((20, 30, 3), 120, np.uint8))
MASK = png(np.full((20, 30), 255, np.uint8))


def test_an_opaque_cutout_stays_rgba():
    """A cut-out whose alpha hides nothing is still a cut-out: its kind decodes to four channels."""
    rgba = np.dstack([np.full((8, 8, 3), 90, np.uint8), np.full((8, 8), 255, np.uint8)])
    pixels = jobpath.decode_kind("cutout", png(rgba), LIMITS)
    assert pixels.shape == (8, 8, 4) and (pixels[..., 3] == 255).all()
    assert jobpath.decode_kind("cleaned", png(rgba), LIMITS).shape == (8, 8, 3)
    assert jobpath.decode_kind("mask", MASK, LIMITS).shape == (20, 30)


@pytest.mark.parametrize("spec", [s for s in steps.specs().values() if s.consumes], ids=lambda s: s.name)
def test_a_needed_input_that_is_missing_is_named(spec):
    with pytest.raises(MissingInput, match=spec.consumes[0]):
        jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {}, LIMITS)


def test_inputs_the_step_does_not_take_and_mismatched_sizes_are_rejected():
    matting = steps.spec("matting")
    with pytest.raises(PermanentError, match="takes no input"):
        jobpath.prepare(matting, matting.params(), jobpath.Blob(PHOTO), {"catalog": jobpath.Blob(PHOTO, "catalog")}, LIMITS)
    small = jobpath.Blob(png(np.zeros((10, 10), np.uint8)), "mask")
    with pytest.raises(PermanentError, match="must match"):
        jobpath.prepare(matting, matting.params(), jobpath.Blob(PHOTO), {"mask": small}, LIMITS)


def test_a_working_image_of_its_own_geometry_lifts_the_size_check():
    """A step after a geometry-changing working image (an upscale) gets source-sized inputs as they are."""
    kinds = steps.artifact_kinds()
    own = next(k for k in kinds.values() if not k.source_geometry)
    inputs = {"mask": np.zeros((10, 10), np.uint8)}
    jobpath._check_geometry(own.name, np.zeros((40, 40, 3), np.uint8), inputs)
    with pytest.raises(PermanentError):
        jobpath._check_geometry(None, np.zeros((40, 40, 3), np.uint8), inputs)


def test_prepare_keys_outputs_by_what_was_read_and_describes_the_source():
    spec = steps.spec("matting")
    first = jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {"mask": jobpath.Blob(MASK, "mask")}, LIMITS)
    assert first.item.image.shape == (20, 30, 3) and first.item.inputs["mask"].shape == (20, 30)
    assert (first.source.width, first.source.height, first.source.content_type) == (30, 20, "image/png")
    assert first.key_basis["inputs"][0] == first.source.sha256
    other_mask = jobpath.Blob(png(np.zeros((20, 30), np.uint8)), "mask")
    second = jobpath.prepare(spec, spec.params(), jobpath.Blob(PHOTO), {"mask": other_mask}, LIMITS)
    assert second.key_basis != first.key_basis


def test_struct_params_keep_whole_numbers_as_ints():
    struct = Struct()
    struct.update({"sizes": [[800, 1000]], "fill": 0.9, "nested": {"n": 3.0}})
    assert jobpath.struct_params(struct) == {"sizes": [[800, 1000]], "fill": 0.9, "nested": {"n": 3}}
    for bad in (float("nan"), float("inf"), -float("inf")):
        struct = Struct()
        struct.update({"margin": [bad]})
        with pytest.raises(InvalidParams, match="NaN or infinite"):
            jobpath.struct_params(struct)


def test_a_routing_step_plans_the_slip_and_reports_reach_the_job():
    router = Router.from_settings(Settings())
    routing = steps.routing_spec()
    job = job_pb2.JobEvent(job_id="j", source=job_pb2.ImageRef(bucket="b", key="k"))
    job.recipe.step_params["cropper"].update({"aspects": ["4:5"]})
    jobpath.start_slip(job, routing)
    assert [s.step for s in job.slip.steps] == [routing.name] and job.slip.position == 0
    routed = StepOutput(info={"x": np.float32(1.5)}, route=Route("other", 0.97, {"other": 0.97}), warnings=["w"])
    next_step = jobpath.advance(job, routing, routed, [], router)
    assert job.slip.steps[0].step == routing.name and job.slip.position == 1
    assert next_step == job.slip.steps[1].step == "cropper" and job.slip.chain == "other"
    assert json.loads(job.slip.steps[1].params_json)["aspects"] == ["4:5"]
    assert job.classification.image_type == "other" and not job.classification.needs_review
    cropper = steps.spec("cropper")
    crop = StepOutput(images=[OutputImage("crop", np.zeros((4, 4, 3), np.uint8), format="jpeg")],
                      needs_review=True, refusals={"16:9": "no room"}, quality=0.4, quality_note="low")
    assert jobpath.advance(job, cropper, crop, [job_pb2.Artifact(kind="crop")], router) is None
    first, last = job.reports
    assert (first.step, first.info["x"], list(first.warnings), first.HasField("quality")) == (routing.name, 1.5, ["w"], False)
    assert (last.step, last.needs_review, dict(last.refusals), last.quality) == ("cropper", True, {"16:9": "no room"}, 0.4)
    assert job.classification.needs_review and [a.kind for a in job.artifacts] == ["crop"]


def test_a_slip_that_points_elsewhere_is_misrouted():
    job = job_pb2.JobEvent(job_id="j")
    job.slip.steps.add(step="segmenter", params_json="{}")
    with pytest.raises(PermanentError, match="does not point at matting"):
        jobpath.planned_params(steps.spec("matting"), job)
    job.slip.steps[0].params_json = '{"model": "sam"}'
    with pytest.raises(PermanentError, match="model"):
        jobpath.planned_params(steps.spec("segmenter"), job)


def test_a_step_may_write_only_the_kinds_its_spec_declares():
    spec = steps.spec("segmenter")
    with pytest.raises(PermanentError, match="does not declare"):
        jobpath.check_output(spec, StepOutput(images=[OutputImage("crop", np.zeros((2, 2), np.uint8))]))
