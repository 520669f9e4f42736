"""The whole line as six separate processes on the real Kafka and S3 protocols, on real photos."""

from __future__ import annotations

import csv
import json
import random
import time

import pytest

from studioline.shared.client import Submitter, collect_results, init_infrastructure
from studioline.shared.launcher import ServiceProcesses
from studioline.shared.jobpath import params_of
from studioline.shared.routing import Router
from studioline.shared.storage import Storage
from studioline.v1 import job_pb2
from tests.helpers import decode, line_settings, read_topic, settings_env, truncated_jpeg

pytestmark = pytest.mark.e2e

SOURCE_TYPES = ("product_on_white", "on_model_studio", "lifestyle_on_model_street",
                "flat_lay_or_hanging_amateur", "non_fashion_other")


def labelled_sample(shared_data, per_type: int, seed: int) -> list:
    """A seeded sample of labelled photos, `per_type` of each source type."""
    by_type: dict[str, list[str]] = {t: [] for t in SOURCE_TYPES}
    with open(shared_data / "image_types.csv") as f:
        for row in csv.DictReader(f):
            by_type[row["image_type"]].append(row["path"])
    rng = random.Random(seed)
    return [shared_data / p for t in SOURCE_TYPES for p in rng.sample(sorted(by_type[t]), per_type)]


@pytest.fixture(scope="module")
def line(kafka, s3, tmp_path_factory):
    """Settings and the running services, once for the module, on fresh topics and buckets."""
    settings = line_settings(kafka, s3, f"e2e{time.time_ns() % 10**8}.")
    init_infrastructure(settings)
    with ServiceProcesses(settings_env(settings), tmp_path_factory.mktemp("service-logs")) as services:
        services.wait_until_serving(timeout_s=300)
        yield settings, services


def submit(settings, paths, keys=None) -> dict[str, str]:
    submitter = Submitter(settings)
    jobs = {}
    for i, path in enumerate(paths):
        bucket, key = submitter.upload(path, key=(keys[i] if keys else f"{i:03d}-{path.name}"))
        jobs[submitter.publish(bucket, key).job_id] = key
    submitter.flush()
    submitter.close()
    return jobs


def check_result(storage, router: Router, job: job_pb2.JobEvent) -> None:
    """The artifacts exist and decode, with the sizes and alpha the chain promises."""
    src_w, src_h = job.source.width, job.source.height
    assert src_w > 0 and src_h > 0 and len(job.source.sha256) == 64
    c = job.classification
    assert c.image_type and 0 < c.confidence <= 1
    expected = router.decide(c.image_type, c.confidence)
    # A step may flag the job too: the segmenter, when its mask's quality is under review_below.
    flagged = any(r.needs_review for r in job.reports)
    for report, planned in zip(job.reports, job.slip.steps, strict=True):  # one report per step, in order
        assert report.step == planned.step
        review_below = params_of(planned).get("review_below")
        if review_below is not None:
            assert report.needs_review == (report.quality < review_below)
    assert (job.slip.chain, c.needs_review) == (expected.chain, expected.needs_review or flagged)
    slip_steps = [s.step for s in job.slip.steps]
    assert slip_steps[0] == "classifier"  # the routing step runs first, at position 0
    steps = slip_steps[1:]
    assert [t.step for t in job.timings] == slip_steps
    assert job.slip.position == len(slip_steps)
    produced = set()
    for art in job.artifacts:
        pixels = decode(storage.get(art.ref.bucket, art.ref.key))
        assert pixels.shape[:2] == (art.ref.height, art.ref.width)
        produced.add(art.kind)
        if art.kind in ("mask", "cutout", "cleaned"):
            assert (art.ref.width, art.ref.height) == (src_w, src_h), art.kind
        if art.kind == "mask":
            assert pixels.ndim == 2
        if art.kind == "cutout":
            assert pixels.shape[2] == 4
            assert 0.01 < (pixels[..., 3] > 127).mean() < 0.99, "cut-out is empty or keeps everything"
        if art.kind == "catalog":
            w, h = (int(x) for x in art.params["size"].split("x"))
            assert (art.ref.width, art.ref.height) == (w, h)
    promised = {
        "segmenter": "mask", "matting": "cutout", "inpainter": "cleaned", "cropper": "crop", "catalog-generator": "catalog"
    }
    assert produced == {promised[s] for s in steps}


def test_real_photos_of_every_type_each_done_exactly_once(line, shared_data):
    settings, _ = line
    photos = labelled_sample(shared_data, per_type=5, seed=7)
    jobs = submit(settings, photos)
    done, dead, _ = collect_results(settings, set(jobs), timeout_s=600)
    assert not dead, {jobs[j]: d.reason for j, d in dead.items()}
    assert set(done) == set(jobs)
    done_ids = [job_pb2.JobEvent.FromString(v).job_id for v in read_topic(settings, settings.kafka.topic("done"))]
    assert sorted(j for j in done_ids if j in jobs) == sorted(jobs), "a job was published to done more than once"
    storage, router = Storage(settings.s3), Router.from_settings(settings)
    for job in done.values():
        check_result(storage, router, job)
    chains = {job.slip.chain for job in done.values()}
    assert len(chains) >= 3, f"25 photos of 5 types took only the chains {chains}"


def test_poison_images_are_dead_lettered_and_the_rest_done(line, shared_data, tmp_path):
    settings, _ = line
    good = labelled_sample(shared_data, per_type=1, seed=11)[:3]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(truncated_jpeg(good[0]))
    not_image = tmp_path / "invoice.jpg"
    not_image.write_bytes(b"%PDF-1.4\n% an invoice, uploaded by mistake\n")
    jobs = submit(settings, [good[0], truncated, good[1], not_image, good[2]])
    done, dead, _ = collect_results(settings, set(jobs), timeout_s=300)
    assert sorted(jobs[j] for j in dead) == ["001-truncated.jpg", "003-invoice.jpg"]
    assert {d.error_code for d in dead.values()} == {"truncated", "not_an_image"}
    for letter in dead.values():
        assert letter.step == "classifier" and letter.reason and letter.source_topic.endswith("ingest")
    assert len(done) == 3


def test_json_and_minio_notification_events(line, shared_data):
    settings, _ = line
    photo = labelled_sample(shared_data, per_type=1, seed=3)[0]
    storage = Storage(settings.s3)
    bucket = settings.s3.incoming_bucket
    storage.put(bucket, "json/one.jpg", photo.read_bytes(), "image/jpeg")
    storage.put(bucket, "notified/two words.jpg", photo.read_bytes(), "image/jpeg")
    notification = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/notified/two+words.jpg",
        "Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
                     "object": {"key": "notified/two+words.jpg", "eTag": "e1"}}}],
    }
    submitter = Submitter(settings)
    garbage = b"\x00\x01 neither JSON nor protobuf \xff"
    submitter.publish_raw(garbage, key=b"json-job")
    submitter.publish_raw(json.dumps({"bucket": bucket, "key": "json/one.jpg", "job_id": "json-job",
                                      "recipe": {"outputs": ["mask"]}}).encode(), key=b"json-job")
    submitter.publish_raw(json.dumps(notification).encode())
    submitter.flush()
    submitter.close()
    from studioline.shared.events import parse_ingest

    (notified,) = parse_ingest(json.dumps(notification).encode(), settings.tenant)
    done, dead, _ = collect_results(settings, {"json-job", notified.job_id}, timeout_s=180)
    assert not dead and set(done) == {"json-job", notified.job_id}
    assert [s.step for s in done["json-job"].slip.steps] == ["classifier", "segmenter"]  # pruned to the mask
    assert done[notified.job_id].source.key == "notified/two words.jpg"
    # The unreadable message is dead-lettered as it came, with the reason; it blocked nothing.
    letters = [job_pb2.DeadLetter.FromString(v) for v in read_topic(settings, settings.kafka.topic("dlq"))]
    (letter,) = [d for d in letters if d.raw == garbage]
    assert letter.error_code == "invalid_event" and "neither JSON nor" in letter.reason


def test_worker_killed_mid_stream_loses_nothing(line, shared_data):
    settings, services = line
    photos = labelled_sample(shared_data, per_type=2, seed=21)
    jobs = submit(settings, photos, keys=[f"kill/{i:03d}-{p.name}" for i, p in enumerate(photos)])
    first, _, _ = collect_results(settings, set(jobs), timeout_s=120, stop_after=1)
    assert first, "nothing finished before the kill"
    services.kill("matting")  # SIGKILL: no draining, no commit
    services.start("matting")
    services.wait_until_serving(timeout_s=120, services=["matting"])
    done, dead, _ = collect_results(settings, set(jobs), timeout_s=420)
    assert not dead and set(done) == set(jobs)
    storage, router = Storage(settings.s3), Router.from_settings(settings)
    for job in done.values():
        check_result(storage, router, job)


def test_sigterm_drains_commits_and_exits_cleanly(line, shared_data):
    settings, services = line
    photos = labelled_sample(shared_data, per_type=2, seed=33)
    jobs = submit(settings, photos, keys=[f"term/{i:03d}-{p.name}" for i, p in enumerate(photos)])
    first, _, _ = collect_results(settings, set(jobs), timeout_s=120, stop_after=2)
    assert first
    assert services.stop("segmenter") == 0  # finished its batch, committed, exited 0
    services.start("segmenter")
    services.wait_until_serving(timeout_s=120, services=["segmenter"])
    done, dead, _ = collect_results(settings, set(jobs), timeout_s=420)
    assert not dead and set(done) == set(jobs)
    # A drained shutdown commits what it finished: nothing is replayed, so nothing is doubled.
    done_ids = [job_pb2.JobEvent.FromString(v).job_id for v in read_topic(settings, settings.kafka.topic("done"))]
    assert sorted(j for j in done_ids if j in jobs) == sorted(jobs)


def test_metrics_and_json_logs_carry_the_work(line, shared_data):
    settings, services = line
    from urllib.request import urlopen

    photo = labelled_sample(shared_data, per_type=1, seed=45)[0]  # a packshot: the segmenter runs
    jobs = submit(settings, [photo], keys=["metrics/one.jpg"])
    done, _, _ = collect_results(settings, set(jobs), timeout_s=180)
    assert set(done) == set(jobs)
    with urlopen(f"http://127.0.0.1:{services.metrics_ports['segmenter']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'studioline_ready{step="segmenter"} 1.0' in text
    ok = [line for line in text.splitlines()
          if line.startswith('studioline_images_total{outcome="ok",source="kafka",step="segmenter"}')]
    assert ok and float(ok[0].split()[-1]) > 0
    records = [json.loads(line) for line in (services.log_dir / "segmenter.log").read_text().splitlines()
               if line.startswith("{")]
    finished = [r for r in records if r.get("message") == "step done"]
    assert any(r["job_id"] in jobs for r in finished)
    assert all(r["job_id"] and r["service"] == "segmenter" for r in finished)
