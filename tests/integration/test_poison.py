"""Poison among good jobs, against the broker: every record ends as exactly one of processed or
dead-lettered with a reason, the loop stays up, nothing is replayed or published twice, and
the partition moves on at once (the figures are printed: pytest -s)."""

from __future__ import annotations

import json
import time

import pytest

from studioline.shared.events import new_job
from studioline.shared.routing import Router
from studioline.shared.storage import Storage
from studioline.v1 import job_pb2
from tests.integration.workers import WatchedWorker, committed, outside_producer, read_until, step_runner

pytestmark = pytest.mark.integration

MIB = 1 << 20


def _photos(shared_data, storage, settings, n: int) -> list[str]:
    names = []
    for path in sorted((shared_data / "E1_mit1003_saliency_subset" / "stimuli").glob("*.jp*g"))[:n]:
        storage.put(settings.s3.incoming_bucket, path.name, path.read_bytes(), "image/jpeg")
        names.append(path.name)
    return names


def _offsets(records) -> list[int]:
    return sorted(r.offset for r in records)


def test_poison_on_ingest(settings, shared_data):
    storage = Storage(settings.s3)
    good = _photos(shared_data, storage, settings, 2)
    bucket = settings.s3.incoming_bucket

    def job(name, **extra):
        return json.dumps({"bucket": bucket, "key": name, "job_id": f"good-{name}", "recipe": {"chain": "other"},
                           **extra}).encode()

    poison = {  # value -> the dead letter's code
        b'{"Records": [1]}': "invalid_event",
        b'{"a":' * 100_000: "invalid_event",  # RecursionError in json.loads
        json.dumps({"Records": [{"eventName": "s3:ObjectCreated:Put",
                                 "s3": {"bucket": {"name": bucket}, "object": {"key": 5}}}]}).encode(): "invalid_event",
        None: "tombstone",
        b"\x00\x01 neither JSON nor protobuf \xff": "invalid_event",
        b"\xfe" * MIB: "invalid_event",  # 1 MiB raw: its letter keeps the bytes in S3
        job("big.jpg", attributes={"blob": "x" * 1_000_000}): "too_large",  # a 1 MB attribute
        job("nan.jpg", recipe={"chain": "other", "stepParams": {"classifier": {"x": float("nan")}}}): "invalid_event",
    }
    topic = settings.kafka.topic("ingest")
    producer = outside_producer(settings)
    values = [job(good[0]), *poison, job(good[1])]
    for value in values:  # one partition, in this order: the good job behind the poison must get out
        producer.send(topic, value=value, key=b"k", partition=0)
    producer.flush()
    producer.close()

    cropper, dlq = settings.kafka.step_topic("cropper"), settings.kafka.topic("dlq")
    start = time.perf_counter()
    with WatchedWorker(step_runner("classifier"), settings) as watched:
        out = read_until(settings, [cropper, dlq], lambda r: len(r[cropper]) >= 2 and len(r[dlq]) >= len(poison))
        elapsed = time.perf_counter() - start
        assert watched.alive, watched.crashed

    letters = [job_pb2.DeadLetter.FromString(r.value) for r in out[dlq]]
    assert sorted((d.offset, d.error_code) for d in letters) == list(zip(range(1, len(poison) + 1), poison.values()))
    forwarded = [job_pb2.JobEvent.FromString(r.value).job_id for r in out[cropper]]
    assert sorted(forwarded) == sorted(f"good-{n}" for n in good)  # each once: no duplicates
    for letter in letters:
        assert letter.reason and letter.step == "classifier" and letter.source_topic == topic
    (big,) = [d for d in letters if d.offset == 6]
    assert not big.raw and storage.get(big.raw_ref.bucket, big.raw_ref.key) == b"\xfe" * MIB
    assert all(len(r.value) <= settings.kafka.max_message_bytes for r in out[dlq])
    assert committed(settings, settings.kafka.group_prefix + "classifier", topic) == len(values)
    assert watched.replays() == 0
    held = watched.seconds_holding({(topic, 0, o) for o in range(1, len(poison) + 1)})
    print(f"\ningest: {len(poison)} poison records among 2 good jobs: {len(letters)} dead letters, "
          f"{len(forwarded)} forwarded, 0 replays; batches holding poison took {held:.2f} s; "
          f"all outcomes {elapsed:.1f} s after the worker started (group join included)")


def test_poison_on_a_step_topic(settings, shared_data):
    """A tombstone, undecodable bytes and a job with a 1 MB attribute (which the ingest limits
    stop; a step topic takes whatever is written to it) in one batch with good jobs: the big
    job's next event would exceed kafka.max_message_bytes, so it is dead-lettered `too_large`
    with the job in S3, and its batch is not replayed, so nothing is published twice."""
    storage = Storage(settings.s3)
    good = _photos(shared_data, storage, settings, 3)
    router = Router.from_settings(settings)

    def job(name: str, **kw) -> job_pb2.JobEvent:
        j = new_job(settings.s3.incoming_bucket, name, tenant=settings.tenant, job_id=f"job-{name}", **kw)
        j.slip.CopyFrom(router.plan("other", job_pb2.Recipe()))  # the chain after the classifier: the cropper
        return j

    big = job(good[0], attributes={"blob": ""})
    target = settings.kafka.max_message_bytes - 600  # fits as it arrives; not with the cropper's outputs
    big.attributes["blob"] = "x" * (target - big.ByteSize() - 4)
    assert target - 4 <= big.ByteSize() <= target
    topic = settings.kafka.step_topic("cropper")
    values = [job(good[0]).SerializeToString(), None, b"\xff\xfe not a job", big.SerializeToString(),
              job(good[1]).SerializeToString(), job(good[2]).SerializeToString()]
    producer = outside_producer(settings)
    for value in values:  # kafka.max_batch is 4: the first batch holds the good job and the poison
        producer.send(topic, value=value, key=b"k", partition=0)
    producer.flush()
    producer.close()

    done, dlq = settings.kafka.topic("done"), settings.kafka.topic("dlq")
    with WatchedWorker(step_runner("cropper"), settings) as watched:
        out = read_until(settings, [done, dlq], lambda r: len(r[done]) >= 3 and len(r[dlq]) >= 3)
        assert watched.alive, watched.crashed

    finished = [job_pb2.JobEvent.FromString(r.value).job_id for r in out[done]]
    assert sorted(finished) == sorted(f"job-{n}" for n in good)  # each once: no duplicate done messages
    letters = {d.offset: d for d in (job_pb2.DeadLetter.FromString(r.value) for r in out[dlq])}
    assert {o: d.error_code for o, d in letters.items()} == {1: "tombstone", 2: "invalid_event", 3: "too_large"}
    too_large = letters[3]
    assert "kafka.max_message_bytes" in too_large.reason and too_large.job.job_id == big.job_id
    stored = job_pb2.JobEvent.FromString(storage.get(too_large.raw_ref.bucket, too_large.raw_ref.key))
    assert stored.attributes["blob"] == big.attributes["blob"] and [a.kind for a in stored.artifacts] == ["crop", "crop"]
    assert all(len(r.value) <= settings.kafka.max_message_bytes for r in out[done] + out[dlq])
    assert committed(settings, settings.kafka.group_prefix + "cropper", topic) == len(values)
    assert watched.replays() == 0
    held = watched.seconds_holding({(topic, 0, o) for o in (1, 2, 3)})
    print(f"\nstep topic: 3 poison records among 3 good jobs: 3 dead letters, {len(finished)} done, "
          f"0 replays, 0 duplicates; the batch holding the poison took {held:.2f} s")
