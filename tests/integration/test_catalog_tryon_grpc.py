"""Try-on through the catalog generator's gRPC service, in process: templates prepared with the
pose model and stored in S3, then a garment put on them, in two colourways, with a contact sheet."""

from __future__ import annotations

import io

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from PIL import Image

from studioline.services.catalog_generator import templates
from studioline.services.catalog_generator.prepare import prepare_template
from studioline.shared.client import step_call
from studioline.shared.config import PROJECT_ROOT, LimitSettings, S3Settings, Settings
from studioline.shared.embedded import EmbeddedS3
from studioline.shared.errors import StudiolineError
from studioline.shared.models.pose import BlazePose
from studioline.shared.models.store import ModelStore
from studioline.shared.runtime import StepRunner
from studioline.shared.grpc_server import GrpcServer
from studioline.shared import steps
from studioline.shared.storage import Storage
from studioline.v1 import steps_pb2
from tests.helpers import decode

pytestmark = pytest.mark.integration


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def viton(shared_data):
    return shared_data / "C1_viton_tryon_256"


@pytest.fixture(scope="module")
def service(s3, viton):
    settings = Settings(
        s3=S3Settings(endpoint=s3, access_key=EmbeddedS3.access_key, secret_key=EmbeddedS3.secret_key, secure=False,
                      templates_bucket="tryon-templates"),
        limits=LimitSettings(inline_max_bytes=2 * 1024 * 1024),
        grpc={"insecure": True, "bind_address": "127.0.0.1"},
    )  # fmt: skip
    storage = Storage(settings.s3)
    storage.ensure_buckets(settings.s3.templates_bucket)
    pose = BlazePose(ModelStore(PROJECT_ROOT / ".models"))
    try:
        pose.load()
    except StudiolineError as exc:
        pytest.skip(str(exc))
    for template_id, name in (("model-a", "000001_0.jpg"), ("model-b", "000200_0.jpg")):
        photo = cv2.imread(str(viton / "image" / name))[..., ::-1].copy()
        templates.save(storage, settings.s3.templates_bucket, template_id, prepare_template(photo, pose))
    assert templates.list_ids(storage, settings.s3.templates_bucket) == ["model-a", "model-b"]
    step = steps.spec("catalog-generator").step_class()(settings, ModelStore(settings.models.dir, storage))
    server = GrpcServer(StepRunner(step), settings, storage, None, 0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield step_call(channel, "catalog-generator")
    channel.close()
    server.stop(0)


def _request(garment: bytes, cutout: bytes, params: dict) -> steps_pb2.StepRequest:
    struct = Struct()
    struct.update(params)
    req = steps_pb2.StepRequest(params=struct)
    req.image.data = garment
    req.inputs["cutout"].data = cutout
    return req


def test_try_on_over_grpc(service, viton):
    name = "000200_1.jpg"
    garment = (viton / "cloth" / name).read_bytes()
    rgb = cv2.imread(str(viton / "cloth" / name))[..., ::-1]
    alpha = np.where(cv2.imread(str(viton / "cloth-mask" / name), cv2.IMREAD_GRAYSCALE) >= 128, 255, 0).astype(np.uint8)
    cutout = _png(np.dstack([rgb, alpha]))
    params = {"template_ids": ["model-a", "model-b"], "colourways": [120], "sizes": ["300x400"], "format": "png"}
    reply = service(_request(garment, cutout, params))
    outs = list(reply.outputs)
    assert len(outs) == 2 * 2 + 1  # two templates x two colourways, and the contact sheet
    composites = [o for o in outs if "sheet" not in o.params]
    assert all((o.width, o.height) == (300, 400) for o in composites)
    sheet = next(o for o in outs if "sheet" in o.params)
    assert sheet.width == 2 * sheet.height * 3 // 4
    # The garment is on the model: the composite differs from the template photo inside its region.
    b = next(o for o in composites if o.params["template"] == "model-b" and o.params["hue"] == 0)
    real = cv2.imread(str(viton / "image" / "000200_0.jpg"))[..., ::-1]
    ours = decode(b.data)[..., :3]
    on_canvas = cv2.resize(real, (300, 400), interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(float) - on_canvas).mean() > 1.0
    assert reply.report.info["templates"]["model-a"]["coverage_px"] > 1000
    assert reply.report.info["garment"]["category"] == "top"


def test_unknown_template_is_invalid_argument(service, viton):
    name = "000200_1.jpg"
    rgb = cv2.imread(str(viton / "cloth" / name))[..., ::-1]
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:8] = 0  # an all-opaque alpha would be decoded as RGB
    cutout = _png(np.dstack([rgb, alpha]))
    with pytest.raises(grpc.RpcError) as err:
        service(_request((viton / "cloth" / name).read_bytes(), cutout, {"template_ids": ["nobody"]}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "templates add" in err.value.details()
