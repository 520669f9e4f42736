"""The platform's side of the line: create topics and buckets, upload photos, publish one
event per image, and collect the result events. Used by `studioline submit`, the demo and
the tests."""

from __future__ import annotations

import mimetypes
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import for_code

from studioline.shared import steps
from studioline.shared.errors import ConfigError
from studioline.shared.events import new_job
from studioline.shared.storage import Storage
from studioline.v1 import job_pb2

_TOPIC_ALREADY_EXISTS = 36
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def step_call(channel, service: str):
    """The unary call of `service`'s step on a gRPC channel: StepRequest -> the step's reply."""
    from studioline.v1 import steps_pb2

    spec = steps.spec(service)
    return channel.unary_unary(
        spec.rpc_path,
        request_serializer=steps_pb2.StepRequest.SerializeToString,
        response_deserializer=spec.reply_class().FromString,
    )


def step_channel(settings, target: str):
    """A channel to a step at `target` ("host:port") with the credentials of the config:
    TLS with grpc.client's CA (and client certificate), or plain text where grpc.insecure says so.
    Pass `call_metadata(settings)` with each call."""
    import grpc

    g = settings.grpc
    if g.insecure:
        return grpc.insecure_channel(target)
    c = g.client
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=c.ca_file.read_bytes() if c.ca_file else None,
            private_key=c.key_file.read_bytes() if c.key_file else None,
            certificate_chain=c.cert_file.read_bytes() if c.cert_file else None,
        )
    except OSError as exc:
        raise ConfigError(f"gRPC client TLS: {exc.filename}: {exc.strerror}") from exc
    return grpc.secure_channel(target, creds)


def call_metadata(settings) -> list[tuple[str, str]]:
    """The token the config holds, as call metadata (none without one)."""
    token = settings.grpc.client.token.get_secret_value()
    return [("authorization", f"Bearer {token}")] if token else []


def all_topics(settings) -> list[str]:
    k = settings.kafka
    per_tenant = [k.topic(f"ingest.{t}") for t in settings.tenants]
    return [k.topic("ingest"), *per_tenant, k.topic("done"), k.topic("dlq")] + [k.step_topic(s) for s in steps.names()]


def create_kafka_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 3,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    **client,
) -> None:
    """Create topics with `partitions` partitions, `replication_factor` copies and topic
    `configs` (e.g. retention.ms); topics that already exist are left as they are. `client`
    adds kafka-python connection settings (security)."""
    names = list(dict.fromkeys(names))
    if not names:
        return
    client.setdefault("bootstrap_servers", bootstrap.split(","))
    admin = KafkaAdminClient(**client, client_id="studioline-admin")
    try:
        result = admin.create_topics(
            {
                n: {"num_partitions": partitions, "replication_factor": replication_factor, "configs": configs or {}}
                for n in names
            },
            raise_errors=False,
        )
        for topic in result["topics"]:
            code = topic["error_code"]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise for_code(code)(f"creating topic {topic['name']}: {topic.get('error_message')}")
        admin.wait_for_topics(names)
    finally:
        admin.close()


def create_topics(settings, names: Iterable[str] | None = None) -> None:
    """The line's topics (or `names`) with the configured partitions, replication, retention and
    largest record (the bound the workers produce and read to, whatever the brokers' default)."""
    k = settings.kafka
    create_kafka_topics(
        k.bootstrap_servers,
        names or all_topics(settings),
        k.partitions,
        k.replication_factor,
        {"retention.ms": str(k.retention_ms), "max.message.bytes": str(k.max_message_bytes)},
        **k.client_config(),
    )


def init_infrastructure(settings) -> None:
    """Topics and buckets the line needs (Helm hooks do the same in a cluster)."""
    create_topics(settings)
    s3 = settings.s3
    Storage(s3).ensure_buckets(s3.incoming_bucket, s3.artifacts_bucket, s3.models_bucket)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class Submitter:
    def __init__(self, settings):
        self.settings = settings
        self.storage = Storage(settings.s3)
        self.producer = KafkaProducer(**settings.kafka.client_config(), acks="all",
                                      max_request_size=settings.kafka.max_message_bytes)

    def upload(self, path: Path, key: str | None = None) -> tuple[str, str]:
        bucket = self.settings.s3.incoming_bucket
        key = key or path.name
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.storage.put(bucket, key, path.read_bytes(), content_type)
        return bucket, key

    def publish(self, bucket: str, key: str, recipe: job_pb2.Recipe | None = None, job_id: str = "",
                attributes: dict[str, str] | None = None) -> job_pb2.JobEvent:
        job = new_job(bucket, key, tenant=self.settings.tenant, job_id=job_id or str(uuid.uuid4()),
                      recipe=recipe, attributes=attributes)
        self.producer.send(self.ingest_topic, key=job.job_id.encode(), value=job.SerializeToString())
        return job

    @property
    def ingest_topic(self) -> str:
        """The tenant's own ingest topic where tenants are configured (the topic names the
        tenant), else the shared one."""
        s = self.settings
        return s.kafka.topic(f"ingest.{s.tenant}" if s.tenant in s.tenants else "ingest")

    def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        self.producer.send(self.ingest_topic, key=key, value=value)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


def collect_results(settings, job_ids: set[str], timeout_s: float, on_result=None, stop_after: int | None = None
                    ) -> tuple[dict[str, job_pb2.JobEvent], dict[str, job_pb2.DeadLetter], list]:
    """Reads the done and dead-letter topics from the start until every job id has an outcome
    (or `stop_after` of them have), or the time is up. Returns (done by job id, dead letters by
    job id, every message seen, duplicates included)."""
    k = settings.kafka
    consumer = KafkaConsumer(
        k.topic("done"), k.topic("dlq"),
        **k.client_config(),
        group_id=f"{k.group_prefix}collector-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=k.max_poll_interval_ms,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
    )
    done: dict[str, job_pb2.JobEvent] = {}
    dead: dict[str, job_pb2.DeadLetter] = {}
    seen: list = []
    deadline = time.monotonic() + timeout_s
    wanted = len(job_ids) if stop_after is None else stop_after
    try:
        while time.monotonic() < deadline and len(job_ids & (done.keys() | dead.keys())) < wanted:
            for record in _records(consumer):
                if record.topic == k.topic("done"):
                    job = job_pb2.JobEvent.FromString(record.value)
                    seen.append(job)
                    if job.job_id in job_ids and job.job_id not in done:
                        done[job.job_id] = job
                        if on_result:
                            on_result(job)
                else:
                    letter = job_pb2.DeadLetter.FromString(record.value)
                    seen.append(letter)
                    if letter.job.job_id in job_ids and letter.job.job_id not in dead:
                        dead[letter.job.job_id] = letter
                        if on_result:
                            on_result(letter)
    finally:
        consumer.close(autocommit=False)
    return done, dead, seen


def _records(consumer) -> Iterator:
    for records in consumer.poll(timeout_ms=500).values():
        yield from records
