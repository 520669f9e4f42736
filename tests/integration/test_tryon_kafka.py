"""Try-on through the Kafka loop: a job whose recipe names templates reaches the catalog
generator with a garment cut-out and comes out on the done topic with composites in S3."""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from PIL import Image

from studioline.services.catalog_generator import templates
from studioline.services.catalog_generator.prepare import prepare_template
from studioline.shared.client import collect_results, create_topics
from studioline.shared.errors import StudiolineError
from studioline.shared.events import new_job
from studioline.shared.models.pose import BlazePose
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared import steps
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker
from studioline.v1 import job_pb2
from tests.helpers import decode, line_settings

pytestmark = pytest.mark.integration


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_try_on_job_through_kafka(kafka, s3, topic_prefix, shared_data):
    viton = shared_data / "C1_viton_tryon_256"
    settings = line_settings(kafka, s3, topic_prefix)
    settings.s3.templates_bucket = f"{topic_prefix}templates".replace(".", "-")
    create_topics(settings)
    storage = Storage(settings.s3)
    storage.ensure_buckets(settings.s3.incoming_bucket, settings.s3.artifacts_bucket, settings.s3.templates_bucket)
    pose = BlazePose(ModelStore(settings.models.dir))
    try:
        pose.load()
    except StudiolineError as exc:
        pytest.skip(str(exc))
    photo = cv2.imread(str(viton / "image" / "000001_0.jpg"))[..., ::-1].copy()
    templates.save(storage, settings.s3.templates_bucket, "model-a", prepare_template(photo, pose))

    # The garment and its cut-out, as the segmenter and matting steps would have left them.
    name = "000200_1.jpg"
    rgb = cv2.imread(str(viton / "cloth" / name))[..., ::-1]
    alpha = np.where(cv2.imread(str(viton / "cloth-mask" / name), cv2.IMREAD_GRAYSCALE) >= 128, 255, 0)
    storage.put(settings.s3.incoming_bucket, name, (viton / "cloth" / name).read_bytes(), "image/jpeg")
    storage.put(settings.s3.artifacts_bucket, f"{settings.tenant}/cutout.png", _png(np.dstack([rgb, alpha.astype(np.uint8)])), "image/png")
    job = new_job(settings.s3.incoming_bucket, name, tenant=settings.tenant, job_id="tryon-1")
    params = Struct()
    params.update({"template_ids": ["model-a"], "sizes": ["300x400"]})
    job.recipe.step_params["catalog-generator"].CopyFrom(params)
    job.slip.CopyFrom(Router.from_settings(settings).plan("product_on_white", job.recipe))
    job.slip.position = [s.step for s in job.slip.steps].index("catalog-generator")
    job.artifacts.add(kind="cutout", step="matting",
                      ref=job_pb2.ImageRef(bucket=settings.s3.artifacts_bucket, key=f"{settings.tenant}/cutout.png"))  # fmt: skip

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(settings.kafka.step_topic("catalog-generator"), key=b"tryon-1", value=job.SerializeToString())
    producer.flush()
    producer.close()

    step = steps.spec("catalog-generator").step_class()(settings, ModelStore(settings.models.dir, storage))
    step.load()
    stop = threading.Event()
    worker = KafkaWorker(StepRunner(step), settings, storage)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        done, dead, _ = collect_results(settings, {"tryon-1"}, timeout_s=90)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not dead and set(done) == {"tryon-1"}
    (catalog,) = [a for a in done["tryon-1"].artifacts if a.kind == "catalog"]
    assert catalog.params["template"] == "model-a"
    # What the step reported per template reaches the done event, as it does over gRPC.
    (report,) = done["tryon-1"].reports
    assert report.step == "catalog-generator" and report.info["garment"]["category"] == "top"
    assert report.info["templates"]["model-a"]["coverage_px"] > 1000
    composite = decode(storage.get(catalog.ref.bucket, catalog.ref.key))
    assert composite.shape[:2] == (400, 300)
    # The garment is on the model: the composite differs from the template photo there.
    template = cv2.resize(photo, (300, 400), interpolation=cv2.INTER_AREA)
    assert np.abs(composite[..., :3].astype(float) - template).mean() > 1.0
