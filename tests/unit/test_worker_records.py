"""The Kafka loop's record handling without a broker: every poison record ends as exactly one
dead letter with a reason, and no dead letter exceeds kafka.max_message_bytes (a larger payload
goes to S3 under dlq/). tests/integration/test_poison.py runs the same against the broker."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from kafka.errors import MessageSizeTooLargeError

from studioline.shared import steps
from studioline.shared.config import Settings
from studioline.shared.errors import TransientError
from studioline.shared.events import new_job
from studioline.shared.worker import _Sent, KafkaWorker
from studioline.v1 import job_pb2

MIB = 1 << 20


class Future:
    def __init__(self, error: Exception | None = None):
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error


class Producer:
    """Keeps what is sent; refuses values over `broker_limit` as a broker would."""

    def __init__(self, broker_limit: int = 10 * MIB):
        self.broker_limit = broker_limit
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic, key=None, value=None):
        if len(value) > self.broker_limit:
            return Future(MessageSizeTooLargeError(f"{len(value)} bytes"))
        self.sent.append((topic, key, value))
        return Future()

    def letters(self) -> list[job_pb2.DeadLetter]:
        return [job_pb2.DeadLetter.FromString(v) for t, _, v in self.sent if t.endswith("dlq")]


class Storage:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.objects: dict[tuple[str, str], bytes] = {}

    def put(self, bucket, key, data, content_type):
        if self.fail:
            raise TransientError("injected outage")
        self.objects[(bucket, key)] = data


class Runner:
    def __init__(self, step: str):
        self.step = SimpleNamespace(spec=steps.spec(step))

    def run(self, items, source):
        raise AssertionError("no poison record may reach the step")


def _worker(step: str, storage=None, producer=None) -> KafkaWorker:
    worker = KafkaWorker(Runner(step), Settings(), storage or Storage())
    worker.producer = producer or Producer()
    return worker


def _record(topic: str, value: bytes | None, offset: int = 0, key: bytes | None = None):
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value, headers=[])


def _job_event(attribute_bytes: int = 0) -> job_pb2.JobEvent:
    job = new_job("incoming", "a.jpg", tenant="default", job_id="big-job", attributes={"blob": "x" * attribute_bytes})
    job.slip.steps.add(step="cropper", params_json="{}")
    return job


INGEST_POISON = {
    b'{"Records": [1]}': "invalid_event",
    b'{"a":' * 100_000: "invalid_event",
    json.dumps({"Records": [{"eventName": "s3:ObjectCreated:Put",
                             "s3": {"bucket": {"name": "b"}, "object": {"key": 5}}}]}).encode(): "invalid_event",
    None: "tombstone",
    b"\x00\x01 neither JSON nor protobuf \xff": "invalid_event",
    json.dumps({"bucket": "b", "key": "k", "attributes": {"blob": "x" * 1_000_000}}).encode(): "too_large",
    json.dumps({"bucket": "b", "key": "k", "recipe": {"stepParams": {"classifier": {"x": 1e999}}}}).encode(): "invalid_event",
    b"\xff" * MIB: "invalid_event",  # 1 MiB raw: its letter would exceed the bound
    b"\xff" * (2 * MIB): "too_large",  # over the bound itself (a broker hands it over all the same)
}


def test_every_poison_record_on_ingest_is_dead_lettered_once():
    worker = _worker("classifier")
    records = [_record(worker.ingest_topic, v, offset=i) for i, v in enumerate(INGEST_POISON)]
    worker.process(records)
    letters = worker.producer.letters()
    assert [letter.offset for letter in letters] == list(range(len(records)))
    assert [letter.error_code for letter in letters] == list(INGEST_POISON.values())
    for letter, value in zip(letters, INGEST_POISON):
        assert letter.reason and letter.step == "classifier" and letter.source_topic == worker.ingest_topic
        assert len(letter.reason) <= 1024
        if value is not None and len(value) >= MIB:  # the raw bytes went to S3, the letter names them
            assert not letter.raw and letter.raw_ref.key == f"dlq/{worker.ingest_topic}/0/{letter.offset}/raw"
            stored = worker.storage.objects[(letter.raw_ref.bucket, letter.raw_ref.key)]
            assert stored == value and letter.raw_ref.sha256 == hashlib.sha256(value).hexdigest()
        else:
            assert letter.raw == (value or b"") and not letter.HasField("raw_ref")
    assert all(len(v) <= Settings().kafka.max_message_bytes for _, _, v in worker.producer.sent)


def test_every_poison_record_on_a_step_topic_is_dead_lettered_once():
    worker = _worker("cropper")
    topic = worker.topics[0]
    misrouted = _job_event()
    misrouted.slip.steps[0].step = "matting"
    bad_params = _job_event()
    bad_params.slip.steps[0].params_json = '{"aspects": 7}'
    poison = {None: "tombstone", b"\xff\xfe": "invalid_event", misrouted.SerializeToString(): "misrouted",
              bad_params.SerializeToString(): "invalid_params"}
    worker.process([_record(topic, v, offset=i) for i, v in enumerate(poison)])
    assert [(d.offset, d.error_code) for d in worker.producer.letters()] == list(enumerate(poison.values()))


def test_a_job_letter_too_large_keeps_the_job_in_s3_and_its_ids():
    worker = _worker("cropper")
    job = _job_event(attribute_bytes=MIB)
    record = _record(worker.topics[0], b"", offset=42)
    worker._await([worker._dead_letter(record, job, TransientError("boom", "retries_exhausted"), 4)])
    (letter,) = worker.producer.letters()
    assert letter.job.job_id == "big-job" and letter.job.source.key == "a.jpg" and not letter.job.attributes
    assert letter.raw_ref.key.startswith(f"dlq/{record.topic}/0/42/job-") and letter.error_code == "retries_exhausted"
    stored = worker.storage.objects[(letter.raw_ref.bucket, letter.raw_ref.key)]
    assert job_pb2.JobEvent.FromString(stored) == job


def test_without_storage_the_letter_still_goes_out_and_says_so():
    worker = _worker("classifier", storage=Storage(fail=True))
    worker.process([_record(worker.ingest_topic, b"\xff" * MIB, key=b"k" * 5000)])
    (letter,) = worker.producer.letters()
    assert not letter.raw and not letter.HasField("raw_ref") and "were not kept: injected outage" in letter.reason
    (_, key, _), = worker.producer.sent
    assert len(key) == 64  # a key over 1 KiB is hashed


@pytest.mark.parametrize("letter_first", [False, True])
def test_a_message_the_broker_refuses_as_too_large_is_dead_lettered_from_s3(letter_first):
    """A broker whose limit is below kafka.max_message_bytes: the next event (or a letter) it
    refuses is dead-lettered `too_large` with the job in S3, instead of rewinding forever."""
    worker = _worker("cropper", producer=Producer(broker_limit=100_000))
    job = _job_event(attribute_bytes=200_000)
    record = _record(worker.topics[0], b"", offset=7)
    if letter_first:
        sent = worker._dead_letter(record, job, TransientError("boom", "retries_exhausted"), 2)
    else:
        sent = _Sent(worker.producer.send("done", value=job.SerializeToString()), record, job, 1)
    worker._await([sent])
    (letter,) = worker.producer.letters()
    assert letter.error_code == ("retries_exhausted" if letter_first else "too_large")
    assert letter.raw_ref.key and letter.job.job_id == "big-job" and letter.ByteSize() < 1000


def test_one_bound_for_producers_consumers_and_topics(monkeypatch):
    from studioline.shared import client
    from studioline.shared.worker import consumer_config, producer_config

    settings = Settings(kafka={"max_message_bytes": 2 * MIB, "max_batch": 4})
    assert producer_config(settings)["max_request_size"] == 2 * MIB
    consumer = consumer_config(settings, "g")
    assert consumer["max_partition_fetch_bytes"] == 2 * MIB and consumer["fetch_max_bytes"] == 8 * MIB
    created = {}
    monkeypatch.setattr(client, "create_kafka_topics", lambda *args, **kw: created.update(configs=args[4]))
    client.create_topics(settings)
    assert created["configs"]["max.message.bytes"] == str(2 * MIB)
