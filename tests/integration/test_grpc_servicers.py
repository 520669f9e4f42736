"""Every step over gRPC, in process: results on a real photo, health, reflection, error codes."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from studioline.shared.client import step_call
from studioline.shared import steps
from studioline.shared.config import LimitSettings, Settings
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared.grpc_server import GrpcServer
from studioline.shared.storage import Storage
from studioline.v1 import steps_pb2
from tests.helpers import decode

pytestmark = pytest.mark.integration

class Server:
    def __init__(self, service: str, settings: Settings, storage):
        self.spec = steps.spec(service)
        step = self.spec.step_class()(settings, ModelStore(settings.models.dir, storage))
        router = Router.from_settings(settings) if self.spec.routes else None
        self.server = GrpcServer(StepRunner(step), settings, storage, router, 0)
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.step, self.service = step, service
        self.call = step_call(self.channel, service)

    def status(self):
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=self.spec.grpc_service)).status

    def warm(self):
        self.step.load()
        self.step.warmup()
        self.server.set_serving(True)

    def close(self):
        self.channel.close()
        self.server.stop(0)


@pytest.fixture(scope="module")
def settings(s3):
    from studioline.shared.config import S3Settings
    from studioline.shared.embedded import EmbeddedS3

    return Settings(
        s3=S3Settings(endpoint=s3, access_key=EmbeddedS3.access_key, secret_key=EmbeddedS3.secret_key, secure=False),
        limits=LimitSettings(inline_max_bytes=2 * 1024 * 1024),
        grpc={"insecure": True, "bind_address": "127.0.0.1", "reflection": True},
        tenants={"default": {"sources": ["grpc-in"], "output_bucket": "grpc-out"}},
    )


@pytest.fixture(scope="module")
def servers(settings):
    storage = Storage(settings.s3)
    storage.ensure_buckets("grpc-in", "grpc-out")
    started = {name: Server(name, settings, storage) for name in steps.names()}
    for server in started.values():
        assert server.status() == health_pb2.HealthCheckResponse.NOT_SERVING  # before the model is warm
        server.warm()
        assert server.status() == health_pb2.HealthCheckResponse.SERVING
    yield started
    for server in started.values():
        server.close()


@pytest.fixture(scope="module")
def photo(shared_data) -> bytes:
    return (shared_data / "C1_viton_tryon_256" / "cloth" / sorted(
        p.name for p in (shared_data / "C1_viton_tryon_256" / "cloth").iterdir())[0]).read_bytes()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _request(data: bytes, params: dict | None = None, **inputs: bytes) -> steps_pb2.StepRequest:
    struct = Struct()
    struct.update(params or {})
    req = steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=data), params=struct)
    for kind, blob in inputs.items():
        req.inputs[kind].data = blob
    return req


def _mask_of(servers, photo) -> bytes:
    (out,) = servers["segmenter"].call(_request(photo)).outputs
    return out.data


@pytest.mark.parametrize("service", steps.names())
def test_reflection_lists_the_step_and_describes_its_method(servers, service):
    spec = steps.spec(service)
    stub = reflection_pb2_grpc.ServerReflectionStub(servers[service].channel)
    (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in reply.list_services_response.service}
    assert {spec.grpc_service, "grpc.health.v1.Health"} <= names
    (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=spec.grpc_service)]))
    assert reply.file_descriptor_response.file_descriptor_proto


def test_classify(servers, photo):
    reply = servers["classifier"].call(_request(photo))
    c = reply.classification
    assert c.image_type in ("product_on_white", "on_model_studio", "lifestyle_on_model_street",
                            "flat_lay_or_hanging_amateur", "other")
    assert abs(sum(c.scores.values()) - 1) < 1e-3 and reply.slip.chain and len(reply.slip.steps) > 1
    assert reply.slip.steps[0].step == "classifier" and reply.report.info["image_type"] == c.image_type


def test_segment_matte_inpaint_crop_compose(servers, photo):
    source = decode(photo)
    h, w = source.shape[:2]
    mask_png = _mask_of(servers, photo)
    mask = decode(mask_png)
    assert mask.shape == (h, w) and 0.05 < (mask > 127).mean() < 0.95

    (cutout,) = servers["matting"].call(_request(photo, mask=mask_png)).outputs
    rgba = decode(cutout.data)
    assert cutout.kind == "cutout" and rgba.shape == (h, w, 4)
    agreement = ((rgba[..., 3] > 127) == (mask > 127)).mean()
    assert agreement > 0.95

    (cleaned,) = servers["inpainter"].call(_request(photo, mask=mask_png)).outputs
    assert decode(cleaned.data).shape == (h, w, 3)

    reply = servers["cropper"].call(_request(photo, {"aspects": ["1:1", "4:5"], "mode": "product"}, mask=mask_png))
    assert reply.report.step == "cropper" and set(reply.report.info["boxes"]) == {"1:1", "4:5"}
    crops = reply.outputs
    assert sorted(c.params["aspect"] for c in crops) == ["1:1", "4:5"]
    for c in crops:
        aw, ah = (int(x) for x in c.params["aspect"].split(":"))
        assert abs(c.width / c.height - aw / ah) < 0.02

    (catalog,) = servers["catalog-generator"].call(_request(photo, {"sizes": ["800x800"]}, cutout=cutout.data)).outputs
    assert (catalog.width, catalog.height) == (800, 800)
    # Integer sizes in a Struct arrive as doubles; they still validate as the integers they are.
    (catalog,) = servers["catalog-generator"].call(_request(photo, {"sizes": [[640, 800]]}, cutout=cutout.data)).outputs
    assert (catalog.width, catalog.height) == (640, 800)


def test_fill_mask_leaves_the_rest_untouched(servers, photo):
    source = decode(photo)
    fill = np.zeros(source.shape[:2], np.uint8)
    fill[10:30, 10:30] = 255
    (cleaned,) = servers["inpainter"].call(_request(photo, {"mode": "mask"}, fill_mask=_png(fill))).outputs
    out = decode(cleaned.data)
    # The source is a JPEG: compare with its decoded pixels, outside the filled square.
    outside = np.ones(fill.shape, bool)
    outside[8:32, 8:32] = False
    assert np.array_equal(out[outside], source[outside])


def test_references_in_and_out(servers, settings, photo):
    storage = Storage(settings.s3)
    storage.put("grpc-in", "cloth.jpg", photo, "image/jpeg")
    req = steps_pb2.StepRequest(image=steps_pb2.ImageInput(ref={"bucket": "grpc-in", "key": "cloth.jpg"}),
                                output_bucket="grpc-out")
    (out,) = servers["segmenter"].call(req).outputs
    assert out.WhichOneof("result") == "ref" and out.ref.bucket == "grpc-out"
    assert decode(storage.get(out.ref.bucket, out.ref.key)).shape == decode(photo).shape[:2]


@pytest.mark.parametrize(
    "service, make_request, fragment",
    [
        ("segmenter", lambda p: _request(b"GIF89a but not really"), "not_an_image"),
        ("segmenter", lambda p: _request(p[: len(p) // 3]), "truncated"),
        ("segmenter", lambda p: _request(p, {"model": "deeplab-v9"}), "model"),
        ("cropper", lambda p: _request(p, {"aspects": ["wide"]}), "aspects"),
        ("matting", lambda p: _request(p), "mask"),
        ("cropper", lambda p: _request(p, cutout=p), "takes no input"),
        ("segmenter", lambda p: steps_pb2.StepRequest(), "no image"),
        ("segmenter", lambda p: _request(b"\xff" * (3 * 1024 * 1024)), "inline limit"),
        ("segmenter", lambda p: steps_pb2.StepRequest(image=steps_pb2.ImageInput(ref={"bucket": "grpc-in", "key": "missing.jpg"})), "NoSuchKey"),
        ("matting", lambda p: _request(p, mask=_png(np.zeros((10, 10), np.uint8))), "must match"),
        ("segmenter", lambda p: steps_pb2.StepRequest(image=steps_pb2.ImageInput(ref={"bucket": "grpc-in", "key": "../x.jpg"})), "invalid_ref"),
        ("segmenter", lambda p: _request(p, {"threshold": float("nan")}), "NaN"),
        ("catalog-generator", lambda p: _request(p, cutout=_png(np.zeros((256, 192, 4), np.uint8))), ""),
        # Eight crops of a flat 2400 px square would not fit one reply: refused before any work.
        ("cropper", lambda p: _request(_png(np.full((2400, 2400, 3), 200, np.uint8)),
                                       {"aspects": ["1:1", "4:5", "5:4", "3:4", "4:3", "2:3", "3:2", "16:9"]}),
         "reply_too_large"),
    ],
)
def test_bad_requests_are_invalid_argument_with_a_reason(servers, photo, service, make_request, fragment):
    with pytest.raises(grpc.RpcError) as err:
        servers[service].call(make_request(photo))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details()


# ---- fuzzing: whatever a caller sends, the answer is a status that names the problem --------

_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED}
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_small_png = _png(np.full((48, 64, 3), 180, np.uint8))
_images = st.sampled_from([_small_png, _small_png[:60], b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a"]) | st.binary(
    max_size=200
)


def _fuzz_request(draw_params, image, inputs, bucket):
    struct = Struct()
    struct.update(draw_params)
    req = steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=image), params=struct, output_bucket=bucket)
    for kind, blob in inputs.items():
        req.inputs[kind].data = blob
    return req


@pytest.mark.parametrize("service", steps.names())
def test_fuzzed_requests_never_get_internal_or_unknown(servers, service):
    spec = steps.spec(service)
    names = list(spec.params.model_fields) + ["no_such_param"]
    answers: dict[str, int] = {}

    @hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        params=st.dictionaries(st.sampled_from(names) | st.text(max_size=6), _json, max_size=4),
        image=_images,
        inputs=st.dictionaries(st.sampled_from(["mask", "cutout", "fill_mask", "nonsense"]), _images, max_size=2),
        bucket=st.sampled_from(["", "", "grpc-out", "..", "a/b", "UPPER"]),
    )
    def one(params, image, inputs, bucket):
        try:
            request = _fuzz_request(params, image, inputs, bucket)
        except ValueError:  # the Struct itself refuses (e.g. an int past 2**64): nothing to send
            return
        try:
            servers[service].call(request, timeout=60)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code = err.code()
            assert len(err.details()) <= 2048, "status details must stay small"
        answers[code.name] = answers.get(code.name, 0) + 1
        assert code in _ANSWERS, (code, params, image[:20], list(inputs), bucket)

    one()
    assert sum(answers.values()) > 0
