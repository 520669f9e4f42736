"""What real producers send: librdkafka (confluent-kafka, the client most platforms use) in every
compression codec, with record headers and null keys, and a MinIO-style bucket notification,
all reach the routing step and come out processed. A batch the consumer cannot decode (here: as
without the zstd library) is dead-lettered offset by offset and skipped; the loop goes on."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from confluent_kafka import Producer
from kafka.record import default_records

from studioline.shared.events import parse_ingest
from studioline.shared.storage import Storage
from studioline.v1 import job_pb2
from tests.integration.workers import WatchedWorker, committed, read_until, step_runner

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
HEADERS = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("empty", None)]


@pytest.fixture(scope="module")
def classifier_runner():
    return step_runner("classifier")


@pytest.fixture
def photo(settings, shared_data) -> str:
    path = sorted((shared_data / "E1_mit1003_saliency_subset" / "stimuli").glob("*.jp*g"))[0]
    Storage(settings.s3).put(settings.s3.incoming_bucket, "photo.jpg", path.read_bytes(), "image/jpeg")
    return "photo.jpg"


def _publish(settings, codec: str, values: list[tuple[bytes | None, bytes]], headers=None) -> None:
    """(key, value) pairs to ingest partition 0 through librdkafka, as one batch where it can."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "compression.type": codec,
                         "linger.ms": 100, "acks": "all"})
    for key, value in values:
        producer.produce(settings.kafka.topic("ingest"), value=value, key=key, headers=headers, partition=0)
    assert producer.flush(30) == 0, f"librdkafka could not deliver the {codec} records"


def _job(settings, photo: str, job_id: str) -> bytes:
    return json.dumps({"bucket": settings.s3.incoming_bucket, "key": photo, "job_id": job_id,
                       "recipe": {"chain": "other"}}).encode()


def _forwarded(settings, records: dict) -> Counter:
    """Job ids the routing step passed on, over every step topic."""
    return Counter(job_pb2.JobEvent.FromString(r.value).job_id
                   for topic, recs in records.items() if topic != settings.kafka.topic("dlq") for r in recs)


def test_every_codec_with_headers_and_null_keys_and_a_minio_notification(settings, classifier_runner, photo, monkeypatch):
    # Which codecs the consumer actually decoded: Tansu stores the batches as the producer made them.
    decoded = Counter()
    for codec in CODECS[1:]:
        real = getattr(default_records, f"{codec}_decode")
        monkeypatch.setattr(default_records, f"{codec}_decode",
                            lambda data, codec=codec, real=real: (decoded.update([codec]), real(data))[1])
    for codec in CODECS:
        _publish(settings, codec, [(None, _job(settings, photo, f"{codec}-{i}")) for i in range(2)], HEADERS)
    bucket = settings.s3.incoming_bucket
    notification = json.dumps({  # as MinIO's Kafka target sends it: the key is bucket/object
        "EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{photo}",
        "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
                     "s3": {"bucket": {"name": bucket}, "object": {"key": photo, "size": 1, "eTag": "e1"}}}],
    }).encode()
    _publish(settings, "zstd", [(f"{bucket}/{photo}".encode(), notification)])
    (notified,) = parse_ingest(notification, settings.tenant)
    wanted = {f"{codec}-{i}" for codec in CODECS for i in range(2)} | {notified.job_id}

    topics = [settings.kafka.step_topic(s) for s in ("segmenter", "inpainter", "matting", "cropper", "catalog-generator")]
    topics.append(settings.kafka.topic("dlq"))
    with WatchedWorker(classifier_runner, settings) as watched:
        out = read_until(settings, topics, lambda r: wanted <= set(_forwarded(settings, r)))
        assert watched.alive, watched.crashed

    assert _forwarded(settings, out) == Counter(wanted)  # every job, once
    assert not out[settings.kafka.topic("dlq")]
    assert set(decoded) == set(CODECS[1:]), decoded
    assert watched.replays() == 0


def test_a_batch_the_consumer_cannot_decode_is_dead_lettered_and_skipped(settings, classifier_runner, photo, monkeypatch):
    """kafka-python raises UnsupportedCodecError inside poll() for a codec whose library is
    missing; before, that ended the loop. Now each record of that batch is dead-lettered
    `unreadable` by its offset, and the good job behind it is processed."""
    monkeypatch.setattr("kafka.codec.has_zstd", lambda: False)
    _publish(settings, "zstd", [(b"k", _job(settings, photo, f"zstd-{i}")) for i in range(3)])
    _publish(settings, "gzip", [(b"k", _job(settings, photo, "after"))])

    cropper, dlq = settings.kafka.step_topic("cropper"), settings.kafka.topic("dlq")
    with WatchedWorker(classifier_runner, settings) as watched:
        out = read_until(settings, [cropper, dlq], lambda r: len(r[cropper]) >= 1 and len(r[dlq]) >= 3)
        assert watched.alive, watched.crashed

    letters = [job_pb2.DeadLetter.FromString(r.value) for r in out[dlq]]
    assert sorted((d.partition, d.offset, d.error_code) for d in letters) == [(0, o, "unreadable") for o in range(3)]
    assert all("zstd" in d.reason and d.source_topic == settings.kafka.topic("ingest") for d in letters)
    assert [job_pb2.JobEvent.FromString(r.value).job_id for r in out[cropper]] == ["after"]
    assert committed(settings, settings.kafka.group_prefix + "classifier", settings.kafka.topic("ingest")) == 4
