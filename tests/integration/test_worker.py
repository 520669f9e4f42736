"""The Kafka loop against the real broker protocol (Tansu) and S3 protocol (moto)."""

from __future__ import annotations

import threading

import pytest
from kafka import KafkaConsumer, TopicPartition

from studioline.shared.client import collect_results, create_topics
from studioline.shared.errors import TransientError
from studioline.shared.events import new_job
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared import steps
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker
from studioline.v1 import job_pb2
from tests.helpers import decode, line_settings, truncated_jpeg

pytestmark = pytest.mark.integration


class FlakyStorage(Storage):
    """Fails the first `failures` reads, as an S3 endpoint under load would."""

    def __init__(self, settings, failures: int):
        super().__init__(settings)
        self.failures = failures
        self.calls = 0

    def get(self, bucket, key, max_bytes=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError(f"injected outage on read {self.calls}")
        return super().get(bucket, key, max_bytes)


@pytest.fixture(scope="module")
def cropper_runner():
    from studioline.shared.config import Settings

    settings = Settings()
    step = steps.spec("cropper").step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    return StepRunner(step)


def _publish_jobs(settings, storage, files: dict[str, bytes]) -> dict[str, str]:
    """Uploads and publishes jobs routed straight to the cropper; returns job id -> name."""
    from kafka import KafkaProducer

    router = Router.from_settings(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    jobs = {}
    for name, data in files.items():
        storage.put(settings.s3.incoming_bucket, name, data, "image/jpeg")
        job = new_job(settings.s3.incoming_bucket, name, tenant=settings.tenant, job_id=f"job-{name}")
        job.slip.CopyFrom(router.plan("other", job_pb2.Recipe()))
        producer.send(settings.kafka.step_topic("cropper"), key=job.job_id.encode(), value=job.SerializeToString())
        jobs[job.job_id] = name
    producer.flush()
    producer.close()
    return jobs


def _process(runner, settings, storage, jobs, timeout_s=90):
    """Runs a worker until every job has an outcome, then stops it as SIGTERM would."""
    stop = threading.Event()
    worker = KafkaWorker(runner, settings, storage)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        return collect_results(settings, set(jobs), timeout_s=timeout_s)
    finally:
        stop.set()
        thread.join(timeout=30)


def _photos(shared_data, n):
    return sorted((shared_data / "E1_mit1003_saliency_subset" / "stimuli").glob("*.jp*g"))[:n]


def test_good_images_done_poison_dead_lettered_offsets_committed(settings, cropper_runner, shared_data):
    storage = Storage(settings.s3)
    photos = _photos(shared_data, 4)
    files = {p.name: p.read_bytes() for p in photos}
    files["truncated.jpg"] = truncated_jpeg(photos[0])
    files["notes.jpg"] = b"%PDF-1.4 this is a document, not a photo"
    jobs = _publish_jobs(settings, storage, files)

    done, dead, seen = _process(cropper_runner, settings, storage, jobs)

    assert {jobs[j] for j in done} == {p.name for p in photos}
    assert {jobs[j]: d.error_code for j, d in dead.items()} == {"truncated.jpg": "truncated", "notes.jpg": "not_an_image"}
    for letter in dead.values():
        assert letter.source_topic == settings.kafka.step_topic("cropper") and letter.offset >= 0
        assert letter.step == "cropper" and letter.reason and letter.attempt == 1
    assert len([m for m in seen if isinstance(m, job_pb2.JobEvent)]) == len(photos)  # no duplicates
    for job in done.values():
        (timing,) = job.timings
        assert timing.step == "cropper" and timing.ms > 0
        crops = [a for a in job.artifacts if a.kind == "crop"]
        assert {c.params["aspect"] for c in crops} == {"1:1", "16:9"}
        for crop in crops:
            pixels = decode(storage.get(crop.ref.bucket, crop.ref.key))
            w, h = crop.ref.width, crop.ref.height
            assert pixels.shape[:2] == (h, w)
            aw, ah = (int(x) for x in crop.params["aspect"].split(":"))
            assert abs(w / h - aw / ah) < 0.02

    # Every message of the batch is committed: a new member of the group starts after them.
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=settings.kafka.group_prefix + "cropper",
                             enable_auto_commit=False)
    topic = settings.kafka.step_topic("cropper")
    committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(settings.kafka.partitions))
    consumer.close()
    assert committed == len(files)


def test_transient_failures_retry_then_dead_letter(settings, cropper_runner, shared_data):
    photo = _photos(shared_data, 1)[0]
    flaky = FlakyStorage(settings.s3, failures=2)  # two failed tries, the third succeeds
    jobs = _publish_jobs(settings, Storage(settings.s3), {"retry-me.jpg": photo.read_bytes()})
    done, dead, _ = _process(cropper_runner, settings, flaky, jobs)
    assert set(done) == set(jobs) and not dead
    assert flaky.calls == 3

    down = FlakyStorage(settings.s3, failures=10**6)  # never recovers
    jobs = _publish_jobs(settings, Storage(settings.s3), {"give-up.jpg": photo.read_bytes()})
    done, dead, _ = _process(cropper_runner, settings, down, jobs)
    (letter,) = dead.values()
    assert letter.error_code == "retries_exhausted" and letter.attempt == settings.retry.max_attempts
    assert "injected outage" in letter.reason


def test_integer_sizes_from_a_recipe_reach_the_catalog_generator_as_integers(settings, shared_data):
    """Regression: a recipe's Struct turned [[800, 1000]] into doubles and every job failed at the
    catalog generator. Parameters are validated at planning and travel as the model's JSON."""
    import io

    import cv2
    import numpy as np
    from kafka import KafkaProducer
    from PIL import Image

    storage = Storage(settings.s3)
    viton = shared_data / "C1_viton_tryon_256"
    name = "000200_1.jpg"
    rgb = cv2.imread(str(viton / "cloth" / name))[..., ::-1]
    alpha = np.where(cv2.imread(str(viton / "cloth-mask" / name), cv2.IMREAD_GRAYSCALE) >= 128, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha])).save(buf, format="PNG")
    storage.put(settings.s3.incoming_bucket, name, (viton / "cloth" / name).read_bytes(), "image/jpeg")
    storage.put(settings.s3.artifacts_bucket, f"{settings.tenant}/sizes/cutout.png", buf.getvalue(), "image/png")
    job = new_job(settings.s3.incoming_bucket, name, tenant=settings.tenant, job_id="int-sizes")
    job.recipe.step_params["catalog-generator"].update({"sizes": [[800, 1000]]})
    job.slip.CopyFrom(Router.from_settings(settings).plan("product_on_white", job.recipe))
    job.slip.position = [s.step for s in job.slip.steps].index("catalog-generator")
    job.artifacts.add(kind="cutout", step="matting",
                      ref=job_pb2.ImageRef(bucket=settings.s3.artifacts_bucket, key=f"{settings.tenant}/sizes/cutout.png"))
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(settings.kafka.step_topic("catalog-generator"), key=b"int-sizes", value=job.SerializeToString())
    producer.flush()
    producer.close()

    step = steps.spec("catalog-generator").step_class()(settings, ModelStore(settings.models.dir, storage))
    done, dead, _ = _process(StepRunner(step), settings, storage, {"int-sizes": name})
    assert not dead, {j: d.reason for j, d in dead.items()}
    (catalog,) = [a for a in done["int-sizes"].artifacts if a.kind == "catalog"]
    assert (catalog.ref.width, catalog.ref.height) == (800, 1000) and catalog.params["size"] == "800x1000"
    assert decode(storage.get(catalog.ref.bucket, catalog.ref.key)).shape[:2] == (1000, 800)


def test_kafka_jobs_cannot_reach_another_tenants_objects(kafka, s3, topic_prefix, shared_data):
    """Tenants over Kafka: the tenant is the ingest topic's (or a notified bucket's owner), a
    source outside its sources or an artifact outside its prefix is dead-lettered `forbidden`
    with the same words whether the object exists, and an event claiming another tenant is too."""
    import json

    from kafka import KafkaProducer

    from studioline.shared.config import TenantSettings

    settings = line_settings(kafka, s3, topic_prefix)
    settings.tenants = {"shop-a": TenantSettings(sources=["shop-a-in"]), "shop-b": TenantSettings(sources=["shop-b-in"])}
    create_topics(settings)
    storage = Storage(settings.s3)
    storage.ensure_buckets("shop-a-in", "shop-b-in", settings.s3.artifacts_bucket)
    photo = _photos(shared_data, 1)[0].read_bytes()
    storage.put("shop-a-in", "a.jpg", photo, "image/jpeg")
    storage.put("shop-b-in", "secret.jpg", photo, "image/jpeg")
    router = Router.from_settings(settings)

    def step_job(job_id: str, tenant: str, bucket: str, key: str) -> bytes:
        job = new_job(bucket, key, tenant=tenant, job_id=job_id)
        job.slip.CopyFrom(router.plan("other", job_pb2.Recipe()))
        return job.SerializeToString()

    forged = new_job("shop-a-in", "a.jpg", tenant="shop-a", job_id="forged-artifact")
    forged.slip.CopyFrom(router.plan("other", job_pb2.Recipe()))
    forged.artifacts.add(kind="mask", step="segmenter",
                         ref=job_pb2.ImageRef(bucket=settings.s3.artifacts_bucket, key="shop-b/x/mask.png"))
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    crop_topic = settings.kafka.step_topic("cropper")
    sends = {
        "own": (crop_topic, step_job("own", "shop-a", "shop-a-in", "a.jpg")),
        "other-exists": (crop_topic, step_job("other-exists", "shop-a", "shop-b-in", "secret.jpg")),
        "other-missing": (crop_topic, step_job("other-missing", "shop-a", "shop-b-in", "nothing.jpg")),
        "models": (crop_topic, step_job("models", "shop-a", settings.s3.models_bucket, "u2net.onnx")),
        "forged-artifact": (crop_topic, forged.SerializeToString()),
    }
    for key, (topic, value) in sends.items():
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()
    step = steps.spec("cropper").step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    done, dead, _ = _process(StepRunner(step), settings, storage, {k: k for k in sends})
    assert set(done) == {"own"} and done["own"].tenant == "shop-a", {j: d.reason for j, d in dead.items()}
    assert all(c.ref.key.startswith("shop-a/") for c in done["own"].artifacts)
    assert {j: d.error_code for j, d in dead.items()} == {k: "forbidden" for k in sends if k != "own"}
    assert dead["other-exists"].reason == dead["other-missing"].reason  # no existence oracle

    # Ingest: the topic names the tenant; a claim of another is refused.
    from studioline.shared.events import parse_ingest

    claim = json.dumps({"bucket": "shop-b-in", "key": "secret.jpg", "tenant": "shop-b"}).encode()
    with pytest.raises(Exception) as caught:
        parse_ingest(claim, "shop-a")
    assert getattr(caught.value, "code", "") == "forbidden"
