"""The Kafka loop every service runs: consume a batch, run the step, store the outputs, pass
the job on, and only then commit.

Guarantees:
- at-least-once: auto-commit is off; a partition's offset is committed only after every job of
  the batch has its outputs in S3 and its next event (or dead letter) is acknowledged by the
  broker. Output keys are deterministic, so a replay rewrites the same objects;
- a failing image never blocks its partition: transient failures are retried with backoff up to
  retry.max_attempts, then dead-lettered; permanent ones are dead-lettered at once, with the
  reason, the source topic/partition/offset and the attempt count;
- every record polled ends as exactly one of: processed, or dead-lettered with a reason. Parsing
  and validating classify every exception (a bug in them is `parser_bug`, not a crash loop); a
  record batch kafka-python cannot decode (a codec, a CRC) is dead-lettered offset by offset and
  skipped; nothing a record holds stops the loop;
- nothing produced exceeds kafka.max_message_bytes: a job whose next event would is dead-lettered
  `too_large` at once, and a dead letter that would keeps its bulk (the raw message or the whole
  job) in S3 under dlq/ in the artifacts bucket and carries its reference (`raw_ref`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from studioline.shared import jobpath
from studioline.shared.errors import InvalidEvent, PermanentError, StudiolineError, TransientError, as_permanent, bounded
from studioline.shared.events import now_ts, parse_ingest, parse_job
from studioline.shared.logs import job_context
from studioline.shared.memory import MemoryBusy, process_budget
from studioline.shared.metrics import DEAD_LETTERS, HOP_SECONDS, IMAGES, RETRIES
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner, encode_outputs, store_outputs
from studioline.shared.imageio import sha256_hex
from studioline.shared.step import StepParams
from studioline.shared.tenants import Tenants
from studioline.v1 import job_pb2

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"
# Room for the record batch's header (61 bytes) and the record's own framing around key and value.
_RECORD_OVERHEAD = 256
# A dead letter's key: the job id or the record's own key, hashed when longer than this.
_MAX_KEY_BYTES = 1024
# Offsets of one undecodable batch dead-lettered per poll (its header may be corrupt too).
_MAX_SKIP = 1000
# What a broker answers for a record over its max.message.bytes.
_REFUSED_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


@dataclass
class _Work:
    record: object  # kafka ConsumerRecord
    job: job_pb2.JobEvent
    params: StepParams  # what the slip gives this step, validated
    error: Exception | None = None
    # The decoded input and its outputs' key basis; holds the memory budget until the outputs are encoded.
    prepared: jobpath.Prepared | None = None


@dataclass
class _Sent:
    """A message on its way to the broker: the job's next event, or a dead letter (`exc` set)."""

    future: object
    record: object  # the record it answers
    job: job_pb2.JobEvent | None
    attempt: int
    exc: Exception | None = None


class _Unread(NamedTuple):
    """The place of a record kafka-python could not decode, standing in for the record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None


def unreadable_batch(exc: BaseException) -> tuple[TopicPartition, int, int] | None:
    """Where kafka-python was unpacking records when `exc` was raised: the partition, the first
    offset it could not hand over and the end of that record batch; None when `exc` came from
    elsewhere. kafka-python 3.0 (pinned) names neither in its exceptions (Java's consumer has
    RecordDeserializationException), so they come from its PartitionRecords._unpack_records
    frame in the traceback (tests/integration/test_codecs.py checks it)."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_unpack_records" and code.co_filename.endswith(os.path.join("kafka", "consumer", "fetcher.py")):
            part, batch = tb.tb_frame.f_locals.get("self"), tb.tb_frame.f_locals.get("batch")
            start = part.next_fetch_offset
            end = max(getattr(batch, "next_offset", start + 1), start + 1)  # a batch before it: skip one
            return part.topic_partition, start, min(end, start + _MAX_SKIP)
        tb = tb.tb_next
    return None


def consumer_config(settings, group: str) -> dict:
    k = settings.kafka
    return dict(
        **k.client_config(),
        group_id=group,
        client_id=f"studioline-{WORKER_ID}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=k.max_batch,
        max_poll_interval_ms=k.max_poll_interval_ms,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        request_timeout_ms=k.request_timeout_ms,
        # A record up to the line's bound per partition, a whole poll of them per fetch (a larger
        # record still arrives, KIP-74, and is dead-lettered `too_large`).
        max_partition_fetch_bytes=k.max_message_bytes,
        fetch_max_bytes=k.max_message_bytes * k.max_batch,
    )


def producer_config(settings) -> dict:
    k = settings.kafka
    return dict(
        **k.client_config(),
        client_id=f"studioline-{WORKER_ID}",
        acks="all",
        linger_ms=5,
        retries=5,
        request_timeout_ms=k.request_timeout_ms,
        max_request_size=k.max_message_bytes,
    )


class KafkaWorker:
    def __init__(self, runner: StepRunner, settings, storage, router: Router | None = None):
        self.runner = runner
        self.spec = runner.step.spec
        self.name = self.spec.name
        self.settings = settings
        self.storage = storage
        self.router = router
        self.budget = process_budget(settings.limits)  # shared with the gRPC front of this process
        self.tenants = Tenants(settings)
        k = settings.kafka
        self.ingest_topic = k.topic("ingest")
        # Ingest topics and whose jobs they carry: the shared one the default tenant's (and
        # bucket notifications the notified bucket's owner's), ingest.<tenant> each tenant's.
        self.ingest_tenants = {self.ingest_topic: settings.tenant}
        self.ingest_tenants.update({k.topic(f"ingest.{t}"): t for t in settings.tenants})
        self.topics = [k.step_topic(self.name)]
        if self.spec.routes:  # new jobs start at the routing step
            self.topics[:0] = list(self.ingest_tenants)
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.consumer = KafkaConsumer(*self.topics, **consumer_config(self.settings, self.settings.kafka.group_prefix + self.name))
        self.producer = KafkaProducer(**producer_config(self.settings))
        log.info("consuming", extra={"topics": self.topics})
        try:
            while not stop.is_set():
                try:
                    batch = self.consumer.poll(timeout_ms=self.settings.kafka.poll_timeout_ms)
                except Exception as exc:  # a codec, a CRC, the broker: none of it stops the loop
                    self._poll_failed(exc)
                    continue
                if batch:
                    self._process_polled(batch)
        finally:
            self.consumer.close(autocommit=False)
            self.producer.flush()
            self.producer.close()

    def _process_polled(self, batch: dict) -> None:
        records = [r for recs in batch.values() for r in recs]
        try:
            self.process(records)
        except Exception as exc:
            # Not every outcome was acknowledged (the broker did not, or a bug in the loop): rewind,
            # so the batch runs again; every record's own failure is dead-lettered, never this.
            if isinstance(exc, KafkaError):
                log.warning("publishing failed, batch will be retried", extra={"error": bounded(str(exc))})
            else:
                log.exception("batch failed, it will be retried")
            for tp, recs in batch.items():
                self.consumer.seek(tp, recs[0].offset)
            time.sleep(self.settings.retry.backoff_initial_s)
            return
        self._commit({tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in batch.items()})

    def _commit(self, offsets: dict) -> None:
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # Partitions moved to another member during the batch: it replays them (idempotently).
            log.warning("commit failed", extra={"error": bounded(str(exc))})

    def _poll_failed(self, exc: Exception) -> None:
        """poll() raised. A record batch kafka-python cannot decode is dead-lettered offset by
        offset (`unreadable`, without the bytes it could not read) and skipped; anything else
        (the broker, a rebalance) is waited out."""
        where = unreadable_batch(exc)
        if where is None:
            log.warning("poll failed, polling again", extra={"error": bounded(f"{type(exc).__name__}: {exc}")})
            time.sleep(self.settings.retry.backoff_initial_s)
            return
        tp, start, end = where
        reason = PermanentError(
            f"the consumer cannot read the record batch at {tp.topic}[{tp.partition}] offset {start}: "
            f"{type(exc).__name__}: {exc}",
            "unreadable",
        )
        try:
            self._await([self._dead_letter(_Unread(tp.topic, tp.partition, o), None, reason, 1) for o in range(start, end)])
        except Exception:  # the next poll meets the same batch and tries again
            log.exception("dead-lettering an unreadable batch failed")
            time.sleep(self.settings.retry.backoff_initial_s)
            return
        self.consumer.seek(tp, end)
        self._commit({tp: OffsetAndMetadata(end, "", -1)})

    def process(self, records: list) -> None:
        """Handles one batch of records; returns when every outcome is acknowledged."""
        sent: list[_Sent] = []
        pending: list[_Work] = []
        for record in records:
            try:
                jobs = self._parse(record)
            except StudiolineError as exc:
                sent.append(self._dead_letter(record, None, exc, attempt=1))
                continue
            for job in jobs:
                try:
                    pending.append(self._validate(record, job))
                except StudiolineError as exc:
                    sent.append(self._dead_letter(record, job, exc, attempt=1))

        retry = self.settings.retry
        attempt = 1
        while pending:
            for work in pending:
                work.job.attempt = attempt
            failed = self._attempt(pending, sent)
            if not failed:
                break
            if attempt >= retry.max_attempts:
                for work in failed:
                    exc = TransientError(f"gave up after {attempt} attempts: {work.error}", "retries_exhausted")
                    sent.append(self._dead_letter(work.record, work.job, exc, attempt))
                break
            RETRIES.labels(self.name).inc(len(failed))
            delay = min(retry.backoff_initial_s * 2 ** (attempt - 1), retry.backoff_max_s)
            log.warning("retrying after transient failures", extra={"count": len(failed), "delay_s": delay})
            time.sleep(delay)
            attempt += 1
            pending = failed
        self._await(sent)

    def _parse(self, record) -> list[job_pb2.JobEvent]:
        """The jobs a record holds; raises a StudiolineError (the parsers classify everything)."""
        k = self.settings.kafka
        size = len(record.value or b"")
        if size > k.max_message_bytes:  # a broker hands over a larger first record all the same
            raise InvalidEvent(f"a record of {size} bytes; at most {k.max_message_bytes} (kafka.max_message_bytes)", "too_large")
        if record.topic in self.ingest_tenants:
            owner = self._bucket_owner if record.topic == self.ingest_topic else None
            return parse_ingest(record.value, self.ingest_tenants[record.topic], self.settings.ingest, owner)
        return [parse_job(record.value)]

    def _bucket_owner(self, bucket: str) -> str | None:
        tenant = self.tenants.for_bucket(bucket)
        return tenant.name if tenant else None

    def _check_tenant(self, job: job_pb2.JobEvent) -> None:
        """What the job names is its tenant's: the source in its sources, every artifact under
        its own prefix of its output bucket (a forged event on a step topic gets no further)."""
        tenant = self.tenants.get(job.tenant)
        self.tenants.check_read(tenant, job.source.bucket, job.source.key, "source")
        for art in job.artifacts:
            self.tenants.check_artifact(tenant, art.ref.bucket, art.ref.key, f"artifact {art.kind}")

    def _validate(self, record, job: job_pb2.JobEvent) -> _Work:
        """The parameters the slip gives this step (a new job's slip starts here), read once."""
        try:
            self._check_tenant(job)
            if record.topic in self.ingest_tenants:
                jobpath.start_slip(job, self.spec)
            return _Work(record, job, jobpath.planned_params(self.spec, job))
        except StudiolineError:
            raise
        except Exception as exc:  # a bug in validation must dead-letter this job, not stop the loop
            log.exception("validating a job failed", extra={"step": self.name})
            raise as_permanent(exc, "validating the job failed", "parser_bug") from exc

    def _await(self, sent: list[_Sent]) -> None:
        """Waits until the broker has acknowledged everything sent. A message it refuses as too
        large (its limit below kafka.max_message_bytes) is dead-lettered with its bulk in S3;
        any other failure raises, and the batch runs again."""
        timeout = self.settings.kafka.request_timeout_ms / 1000
        refused = []
        for s in sent:
            try:
                s.future.get(timeout=timeout)
            except _REFUSED_TOO_LARGE as exc:
                why = s.exc or PermanentError(f"the broker refused the next event: {exc}", "too_large")
                refused.append(self._dead_letter(s.record, s.job, why, s.attempt, offload=True))
        for s in refused:
            s.future.get(timeout=timeout)

    def _attempt(self, pending: list[_Work], sent: list[_Sent]) -> list[_Work]:
        """One try at each job; returns the ones that failed transiently."""
        failed: list[_Work] = []
        ready: list[_Work] = []
        deferred: list[_Work] = []  # no room in the memory budget beside this batch's other jobs
        for work in pending:
            with job_context(work.job.job_id):
                try:
                    self._prepare(work)
                    ready.append(work)
                except MemoryBusy as exc:
                    work.error = exc
                    (deferred if ready else failed).append(work)
                except PermanentError as exc:
                    sent.append(self._dead_letter(work.record, work.job, exc, work.job.attempt))
                except Exception as exc:  # storage outage, timeouts: worth another try
                    work.error = exc
                    failed.append(work)
        if not ready:
            return failed
        results, per_item_s = self.runner.run([w.prepared.item for w in ready], source="kafka")
        for work, result in zip(ready, results):
            attempt = work.job.attempt  # moving the job on resets it
            with job_context(work.job.job_id):
                try:
                    if isinstance(result, Exception):
                        raise result
                    sent.append(self._forward(work, result, per_item_s))
                    IMAGES.labels(self.name, "kafka", "ok").inc()
                except (TransientError, MemoryError, OSError) as exc:
                    work.error = exc
                    failed.append(work)
                except StudiolineError as exc:
                    sent.append(self._dead_letter(work.record, work.job, exc, attempt))
                except Exception as exc:  # the step's own code failed: deterministic for this input
                    log.exception("step failed", extra={"step": self.name})
                    sent.append(self._dead_letter(work.record, work.job, as_permanent(exc, f"{self.name} failed", "step_failed"), attempt))
                finally:
                    work.prepared.release()
        # The deferred jobs fit now that this round's outputs are encoded: same attempt.
        return failed + (self._attempt(deferred, sent) if deferred else [])

    # ---- one job --------------------------------------------------------------------------

    def _prepare(self, work: _Work) -> None:
        job = work.job
        image_kind, image_ref, input_refs = jobpath.reads_for(self.spec, job)
        max_bytes = self.settings.limits.max_bytes
        image = jobpath.Blob(self.storage.get(image_ref.bucket, image_ref.key, max_bytes), image_kind)
        inputs = {kind: jobpath.Blob(self.storage.get(ref.bucket, ref.key, max_bytes), kind) for kind, ref in input_refs.items()}
        prepared = jobpath.prepare(self.spec, work.params, image, inputs, self.settings.limits, job.job_id, self.budget)
        work.prepared = prepared
        if prepared.source is not None:  # what was read, not what the sender claimed
            job.source.MergeFrom(prepared.source)
        HOP_SECONDS.labels(self.name).observe(max(0.0, time.time() - job.updated_at.ToNanoseconds() / 1e9))

    def _forward(self, work: _Work, output, per_item_s: float) -> _Sent:
        job = work.job
        attempt = job.attempt
        now = now_ts()
        queue_ms = max(0.0, (now.ToNanoseconds() - job.updated_at.ToNanoseconds()) / 1e6 - per_item_s * 1000)
        artifacts = store_outputs(
            self.storage,
            self.settings.s3.artifacts_bucket,
            job.tenant,
            job.source.sha256,
            self.name,
            work.prepared.key_basis,
            encode_outputs(self.spec, output),
        )
        job.timings.add(step=self.name, ms=per_item_s * 1000, queue_ms=queue_ms, worker=WORKER_ID)
        next_step = jobpath.advance(job, self.spec, output, artifacts, self.router)
        job.updated_at.CopyFrom(now_ts())
        k = self.settings.kafka
        topic = k.step_topic(next_step) if next_step else k.topic("done")
        key, value = job.job_id.encode(), job.SerializeToString()
        if not self._fits(key, value):
            raise PermanentError(
                f"the next event for {topic} is {len(value)} bytes; at most {k.max_message_bytes} (kafka.max_message_bytes)",
                "too_large",
            )
        log.info("step done", extra={"step": self.name, "next": topic, "ms": round(per_item_s * 1000, 1)})
        return _Sent(self.producer.send(topic, key=key, value=value), work.record, job, attempt)

    def _fits(self, key: bytes | None, value: bytes) -> bool:
        return len(key or b"") + len(value) + _RECORD_OVERHEAD <= self.settings.kafka.max_message_bytes

    def _dead_letter(self, record, job: job_pb2.JobEvent | None, exc: Exception, attempt: int, offload: bool = False) -> _Sent:
        code = getattr(exc, "code", "error")
        letter = job_pb2.DeadLetter(
            reason=bounded(str(exc)),
            error_code=code,
            step=self.name,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempt=attempt,
        )
        if job is not None:
            letter.job.CopyFrom(job)
        else:
            letter.raw = record.value or b""
        letter.failed_at.CopyFrom(now_ts())
        key = job.job_id.encode() if job is not None else record.key
        if key is not None and len(key) > _MAX_KEY_BYTES:
            key = hashlib.sha256(key).hexdigest().encode()
        value = letter.SerializeToString()
        if offload or not self._fits(key, value):
            value = self._offload(letter, record, job, key)
        DEAD_LETTERS.labels(self.name, code).inc()
        IMAGES.labels(self.name, "kafka", "dead_letter").inc()
        log.warning("dead-lettered", extra={"step": self.name, "code": code, "reason": letter.reason})
        future = self.producer.send(self.settings.kafka.topic("dlq"), key=key, value=value)
        return _Sent(future, record, job, attempt, exc)

    def _offload(self, letter: job_pb2.DeadLetter, record, job: job_pb2.JobEvent | None, key: bytes | None) -> bytes:
        """The letter with its bulk (the raw message, or the whole job) moved to S3 under a key
        derived from the record's place, and the job's ids kept; returns it serialized."""
        if job is None:
            payload, name, content_type = record.value or b"", "raw", "application/octet-stream"
        else:
            digest = hashlib.sha256(job.job_id.encode()).hexdigest()[:16]  # one record may hold several jobs
            payload, name, content_type = job.SerializeToString(), f"job-{digest}.pb", "application/x-protobuf"
            letter.job.CopyFrom(job_pb2.JobEvent(job_id=job.job_id, tenant=job.tenant, source=job.source,
                                                 attempt=job.attempt, created_at=job.created_at, updated_at=job.updated_at))
        letter.raw = b""
        bucket = self.settings.s3.artifacts_bucket
        path = f"dlq/{record.topic}/{record.partition}/{record.offset}/{name}"
        try:
            self.storage.put(bucket, path, payload, content_type)
            letter.raw_ref.CopyFrom(job_pb2.ImageRef(bucket=bucket, key=path, content_type=content_type,
                                                     sha256=sha256_hex(payload)))
        except StudiolineError as exc:  # the record stays at its offset until the topic's retention ends
            letter.reason = bounded(f"{letter.reason} [its {len(payload)} bytes were not kept: {exc}]")
        value = letter.SerializeToString()
        if not self._fits(key, value):  # ids too large to carry: a step topic takes any job
            letter.ClearField("job")
            value = letter.SerializeToString()
        return value
