"""The chaos suite's smoke part (bench/chaos.py runs the whole of it): poison records and one
hostile image among good jobs, through the real classifier worker (it consumes the ingest topic
and its own step topic) on the embedded broker. Every record ends as exactly one of processed
(its next event published) or dead-lettered with a reason; none is lost, the loop lives on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from studioline.shared import steps
from studioline.shared.client import create_topics
from studioline.shared.events import new_job
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker
from studioline.v1 import job_pb2
from tests.helpers import line_settings

pytestmark = pytest.mark.integration

# bench/ is scripts, not a package: its hostile-image helpers are loaded by path.
_spec = importlib.util.spec_from_file_location("hostile_images", Path(__file__).resolve().parents[2] / "bench" / "hostile_images.py")
hostile_images = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = hostile_images  # dataclasses look their module up there
_spec.loader.exec_module(hostile_images)


def _read(settings, topics: list[str], until, timeout_s: float) -> list:
    """Records of `topics` from the start (every partition assigned, no group) until `until`."""
    k = settings.kafka
    consumer = KafkaConsumer(bootstrap_servers=k.bootstrap_servers, enable_auto_commit=False, group_id=None)
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(k.partitions)])
    consumer.seek_to_beginning()
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            for recs in consumer.poll(timeout_ms=300).values():
                records.extend(recs)
    finally:
        consumer.close()
    return records


def test_poison_and_a_hostile_image_end_processed_or_dead_lettered(kafka, s3, topic_prefix, shared_data):
    settings = line_settings(kafka, s3, topic_prefix)
    create_topics(settings)
    storage = Storage(settings.s3)
    storage.ensure_buckets(settings.s3.incoming_bucket, settings.s3.artifacts_bucket)
    bucket, k = settings.s3.incoming_bucket, settings.kafka
    photos = sorted((shared_data / "C1_viton_tryon_256" / "cloth").glob("*.jpg"))[:3]
    for photo in photos:
        storage.put(bucket, photo.name, photo.read_bytes(), "image/jpeg")
    bomb = hostile_images.small_png(hostile_images.chunk(b"zTXt", b"Comment\x00\x00" + hostile_images.inflating(64 << 20)))
    storage.put(bucket, "ztxt-bomb.png", bomb, "image/png")

    good = [new_job(bucket, p.name, tenant=settings.tenant, job_id=f"good-{i}") for i, p in enumerate(photos)]
    hostile = new_job(bucket, "ztxt-bomb.png", tenant=settings.tenant, job_id="ztxt-bomb")
    ingest, own = k.topic("ingest"), k.step_topic("classifier")
    poison = [
        (ingest, b'{"Records": [1]}'),
        (ingest, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        (ingest, json.dumps({"Records": [{"eventName": "s3:ObjectCreated:Put",
                                          "s3": {"bucket": {"name": bucket}, "object": {"key": 123}}}]}).encode()),
        (ingest, None),
        (own, None),
        (own, bytes(range(256)) * 16),
    ]
    producer = KafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all")
    places = []  # (topic, partition, offset) of each poison record
    for job in good[:1] + [hostile]:
        producer.send(ingest, key=job.job_id.encode(), value=job.SerializeToString(), partition=0)
    for topic, value in poison:  # all on partition 0, ahead of the last good jobs
        meta = producer.send(topic, key=b"poison", value=value, partition=0).get(timeout=30)
        places.append((meta.topic, meta.partition, meta.offset))
    for job in good[1:]:
        producer.send(ingest, key=job.job_id.encode(), value=job.SerializeToString(), partition=0)
    producer.flush()
    producer.close()

    spec = steps.spec("classifier")
    step = spec.step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    worker = KafkaWorker(StepRunner(step), settings, storage, Router.from_settings(settings))
    stop, crashed = threading.Event(), []

    def run():
        try:
            worker.run(stop)
        except BaseException as exc:  # the loop itself died: what must never happen
            crashed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wanted = len(good) + 1 + len(poison)
    try:
        records = _read(settings, [k.step_topic("segmenter"), k.topic("dlq")], lambda r: len(r) >= wanted, timeout_s=45)
        alive = thread.is_alive() and not crashed
    finally:
        stop.set()
        thread.join(timeout=30)

    assert alive, f"the worker's loop died: {crashed}"
    forwarded = [job_pb2.JobEvent.FromString(r.value).job_id for r in records if r.topic != k.topic("dlq")]
    letters = [job_pb2.DeadLetter.FromString(r.value) for r in records if r.topic == k.topic("dlq")]
    assert sorted(forwarded) == sorted(j.job_id for j in good), "a good job was lost or passed on twice"
    for letter in letters:
        assert letter.reason and letter.error_code and letter.step == "classifier", letter
    by_place = {(d.source_topic, d.partition, d.offset): d for d in letters if not d.job.job_id}
    assert sorted(by_place) == sorted(places), "each poison record: exactly one dead letter"
    (bomb_letter,) = [d for d in letters if d.job.job_id == hostile.job_id]
    # A file that cannot be decoded fails the same way every time: dead-lettered at once, not retried.
    assert bomb_letter.attempt == 1 and bomb_letter.error_code != "retries_exhausted", bomb_letter
    assert len(letters) == len(poison) + 1


def test_chaos_script_runs_its_fuzz_part(tmp_path):
    """bench/chaos.py itself does not rot: its in-process part, a few hundred events."""
    script = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"
    proc = subprocess.run([sys.executable, str(script), "--part", "fuzz", "--fuzz-n", "300", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fuzz = json.loads((tmp_path / "chaos.json").read_text())["parts"]["fuzz"]
    for kind in ("json", "bytes"):
        assert fuzz[kind]["events"] == 300 and fuzz[kind]["unclassified"] == 0, fuzz[kind]
