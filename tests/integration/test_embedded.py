"""The embedded broker and S3 endpoint speak the real protocols the services use."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata
from minio.error import S3Error

from studioline.shared.client import create_kafka_topics

pytestmark = pytest.mark.integration

# Tansu completes a join or rebalance after about session_timeout_ms / 2.
GROUP_TIMEOUTS = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}
DEADLINE_S = 30.0


def _consumer(bootstrap: str, topic: str, group: str, **overrides) -> KafkaConsumer:
    config = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": 30_000,
        **GROUP_TIMEOUTS,
        **overrides,
    }
    return KafkaConsumer(topic, **config)


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, n: int, partitions: int = 3) -> list[tuple[int, int, bytes]]:
    """n records round-robin over the partitions; returns (partition, offset, value) as acked."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        acked = []
        for i in range(n):
            value = f"record-{i}".encode()
            md = producer.send(topic, value=value, key=f"k{i}".encode(), partition=i % partitions).get(
                timeout=10
            )
            acked.append((md.partition, md.offset, value))
        return acked
    finally:
        producer.close()


def _poll_until(consumer: KafkaConsumer, done: Callable[[], bool], on_batch) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, "timed out polling the embedded broker"
        batch = consumer.poll(timeout_ms=200)
        if batch:
            on_batch(batch)


def test_create_topics_sets_partitions_and_tolerates_existing(kafka, topic_prefix):
    a, b, c = (f"{topic_prefix}{n}" for n in "abc")
    create_kafka_topics(kafka, [a, b])
    create_kafka_topics(kafka, [a, c], partitions=5)  # a exists: kept as it is, no error

    assert _partition_counts(kafka, [a, b, c]) == {a: 3, b: 3, c: 5}


def test_group_manual_commit_and_restart_resumes_after_committed_offset(kafka, topic_prefix):
    topic, group = f"{topic_prefix}jobs", f"{topic_prefix}group"
    create_kafka_topics(kafka, [topic])
    acked = _produce(kafka, topic, 30)
    # acks="all" + future.get(): each partition's offsets are dense from 0 in send order.
    assert acked == [(i % 3, i // 3, f"record-{i}".encode()) for i in range(30)]
    everything = {(p, o): v for p, o, v in acked}

    # First member: commit every batch until >= 12 records are committed, then take one more
    # batch and "crash" before committing it.
    first = _consumer(kafka, topic, group, max_poll_records=4)
    committed: dict[tuple[int, int], bytes] = {}
    uncommitted: dict[tuple[int, int], bytes] = {}
    positions: dict[int, int] = {}

    def handle(batch):
        records = {(tp.partition, r.offset): r.value for tp, rs in batch.items() for r in rs}
        if len(committed) >= 12:
            uncommitted.update(records)
            return
        first.commit({tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in batch.items()})
        committed.update(records)
        positions.update({tp.partition: rs[-1].offset + 1 for tp, rs in batch.items()})

    try:
        _poll_until(first, lambda: bool(uncommitted), handle)
    finally:
        first.close()
    assert committed.items() <= everything.items() and uncommitted.items() <= everything.items()
    assert not committed.keys() & uncommitted.keys()

    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        stored = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    assert {tp.partition: om.offset for tp, om in stored.items() if om.offset >= 0} == positions

    # Restarted member: gets exactly what was not committed (the crashed batch included).
    second = _consumer(kafka, topic, group)
    redelivered: dict[tuple[int, int], bytes] = {}
    expected = {k: v for k, v in everything.items() if k not in committed}
    try:
        _poll_until(
            second,
            lambda: len(redelivered) >= len(expected),
            lambda batch: redelivered.update(
                {(tp.partition, r.offset): r.value for tp, rs in batch.items() for r in rs}
            ),
        )
        assert not second.poll(timeout_ms=500), "records past the end of the topic"
    finally:
        second.close()
    assert redelivered == expected
    assert uncommitted.items() <= redelivered.items()
    for partition in range(3):
        offsets = sorted(o for p, o in redelivered if p == partition)
        assert offsets == list(range(positions.get(partition, 0), 10))


def test_two_group_members_split_three_partitions(kafka, topic_prefix):
    topic, group = f"{topic_prefix}split", f"{topic_prefix}group"
    create_kafka_topics(kafka, [topic])
    stop = threading.Event()
    assignments: dict[str, set[int]] = {}
    received: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def member(name: str) -> None:
        try:
            consumer = _consumer(kafka, topic, group)
            try:
                while not stop.is_set():
                    batch = consumer.poll(timeout_ms=100)
                    assignments[name] = {tp.partition for tp in consumer.assignment()}
                    for tp, records in batch.items():
                        received[name] += [(tp.partition, r.offset) for r in records]
                    if batch:
                        consumer.commit(
                            {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in batch.items()}
                        )
            finally:
                consumer.close()
        except BaseException as exc:  # surfaced by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(n,), daemon=True) for n in received]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            a, b = assignments.get("a", set()), assignments.get("b", set())
            if a and b and not a & b and a | b == {0, 1, 2}:
                break
            assert not errors, errors
            assert time.monotonic() < deadline, f"group never split the partitions: {assignments}"
            time.sleep(0.05)

        acked = _produce(kafka, topic, 30)
        deadline = time.monotonic() + DEADLINE_S
        while len(received["a"]) + len(received["b"]) < 30:
            assert not errors, errors
            assert time.monotonic() < deadline, f"only {received} arrived"
            time.sleep(0.05)
        time.sleep(0.3)  # let any duplicate delivery show up
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert assignments["a"] == a and assignments["b"] == b, "assignment changed while consuming"
    for name, parts in (("a", a), ("b", b)):
        assert sorted(received[name]) == sorted((p, o) for p, o, _ in acked if p in parts)


def test_produce_and_subscribe_create_unknown_topics_with_broker_default(kafka, topic_prefix):
    """Why create_kafka_topics() must run first: Tansu creates unknown topics with 4 partitions."""
    produced, subscribed = f"{topic_prefix}produced", f"{topic_prefix}subscribed"
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        producer.send(produced, b"x").get(timeout=10)
    finally:
        producer.close()
    consumer = _consumer(kafka, subscribed, f"{topic_prefix}group")
    try:
        consumer.poll(timeout_ms=500)
    finally:
        consumer.close()
    assert _partition_counts(kafka, [produced, subscribed]) == {produced: 4, subscribed: 4}


def _bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_s3_buckets_objects_and_content_types(minio_client):
    bucket = _bucket()
    assert not minio_client.bucket_exists(bucket)
    minio_client.make_bucket(bucket)
    assert minio_client.bucket_exists(bucket)
    assert bucket in {b.name for b in minio_client.list_buckets()}

    objects = {
        "jobs/j1/input.jpg": (b"\xff\xd8\xff\xe0jpeg-ish", "image/jpeg"),
        "jobs/j1/mask.png": (b"\x89PNG\r\n\x1a\npng-ish", "image/png"),
        "jobs/j2/result.json": (b'{"ok": true}', "application/json"),
        "top.txt": (b"hello", "text/plain"),
    }
    for name, (data, content_type) in objects.items():
        minio_client.put_object(
            bucket, name, io.BytesIO(data), len(data), content_type=content_type,
            metadata={"x-amz-meta-job": name.split("/")[1] if "/" in name else "none"},
        )
    for name, (data, content_type) in objects.items():
        stat = minio_client.stat_object(bucket, name)
        assert (stat.size, stat.content_type) == (len(data), content_type)
        assert stat.metadata["x-amz-meta-job"] == (name.split("/")[1] if "/" in name else "none")
        response = minio_client.get_object(bucket, name)
        try:
            assert response.read() == data
            assert response.headers["Content-Type"] == content_type
        finally:
            response.close()
            response.release_conn()

    assert {o.object_name for o in minio_client.list_objects(bucket, recursive=True)} == set(objects)
    assert {o.object_name for o in minio_client.list_objects(bucket)} == {"jobs/", "top.txt"}
    assert {o.object_name for o in minio_client.list_objects(bucket, prefix="jobs/j1/")} == {
        "jobs/j1/input.jpg",
        "jobs/j1/mask.png",
    }

    minio_client.remove_object(bucket, "top.txt")
    with pytest.raises(S3Error) as missing:
        minio_client.stat_object(bucket, "top.txt")
    assert missing.value.code == "NoSuchKey"
    with pytest.raises(S3Error) as no_bucket:
        minio_client.get_object(_bucket(), "anything")
    assert no_bucket.value.code == "NoSuchBucket"


def test_s3_multi_megabyte_objects(minio_client):
    bucket = _bucket()
    minio_client.make_bucket(bucket)
    # Just over minio's 5 MiB part size, so both uploads below go multipart.
    data = random.Random(0).randbytes(5 * 1024 * 1024 + 123)
    digest = hashlib.sha256(data).hexdigest()

    minio_client.put_object(bucket, "known-length.bin", io.BytesIO(data), len(data),
                            content_type="application/octet-stream")
    minio_client.put_object(bucket, "streamed.bin", io.BytesIO(data), -1, part_size=5 * 1024 * 1024,
                            content_type="image/png")
    for name, content_type in (("known-length.bin", "application/octet-stream"),
                               ("streamed.bin", "image/png")):
        stat = minio_client.stat_object(bucket, name)
        assert (stat.size, stat.content_type) == (len(data), content_type)
        response = minio_client.get_object(bucket, name)
        try:
            assert hashlib.sha256(response.read()).hexdigest() == digest
        finally:
            response.close()
            response.release_conn()

    tail = minio_client.get_object(bucket, "known-length.bin", offset=5 * 1024 * 1024, length=123)
    try:
        assert tail.read() == data[-123:]
    finally:
        tail.close()
        tail.release_conn()
