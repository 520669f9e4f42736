"""The Kafka loop every service runs: consume a batch, run the step, store the outputs, pass
the job on, and only then commit.

Guarantees:
- at-least-once: auto-commit is off; a partition's offset is committed only after every job of
  the batch has its outputs in S3 and its next event (or dead letter) is acknowledged by the
  broker. Output keys are deterministic, so a replay rewrites the same objects;
- a failing image never blocks its partition: transient failures are retried with backoff up to
  retry.max_attempts, then dead-lettered; permanent ones are dead-lettered at once, with the
  reason, the source topic/partition/offset and the attempt count.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata
from kafka.errors import CommitFailedError, KafkaError

from studioline.shared import jobpath
from studioline.shared.errors import PermanentError, StudiolineError, TransientError
from studioline.shared.events import now_ts, parse_ingest, parse_job
from studioline.shared.logs import job_context
from studioline.shared.metrics import DEAD_LETTERS, HOP_SECONDS, IMAGES, RETRIES
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner, encode_outputs, store_outputs
from studioline.shared.step import StepInput
from studioline.v1 import job_pb2

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class _Work:
    record: object  # kafka ConsumerRecord
    job: job_pb2.JobEvent
    item: StepInput | None = None
    error: Exception | None = None
    key_basis: dict = field(default_factory=dict)


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
    )


class KafkaWorker:
    def __init__(self, runner: StepRunner, settings, storage, router: Router | None = None):
        self.runner = runner
        self.spec = runner.step.spec
        self.name = self.spec.name
        self.settings = settings
        self.storage = storage
        self.router = router
        k = settings.kafka
        self.ingest_topic = k.topic("ingest")
        self.topics = [k.step_topic(self.name)]
        if self.spec.routes:  # new jobs start at the routing step
            self.topics.insert(0, self.ingest_topic)
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.consumer = KafkaConsumer(*self.topics, **consumer_config(self.settings, self.settings.kafka.group_prefix + self.name))
        self.producer = KafkaProducer(**producer_config(self.settings))
        log.info("consuming", extra={"topics": self.topics})
        try:
            while not stop.is_set():
                batch = self.consumer.poll(timeout_ms=self.settings.kafka.poll_timeout_ms)
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
        except KafkaError as exc:
            # The broker did not acknowledge what we produced: rewind, so the batch runs again.
            log.warning("publishing failed, batch will be retried", extra={"error": str(exc)})
            for tp, recs in batch.items():
                self.consumer.seek(tp, recs[0].offset)
            time.sleep(self.settings.retry.backoff_initial_s)
            return
        offsets = {tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in batch.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # Partitions moved to another member during the batch: it replays them (idempotently).
            log.warning("commit failed after a rebalance", extra={"error": str(exc)})

    def process(self, records: list) -> None:
        """Handles one batch of records; returns when every outcome is acknowledged."""
        futures = []
        pending: list[_Work] = []
        for record in records:
            try:
                if record.topic == self.ingest_topic:
                    jobs = parse_ingest(record.value, self.settings.tenant)
                else:
                    jobs = [parse_job(record.value)]
            except PermanentError as exc:
                futures.append(self._dead_letter(record, None, exc, attempt=1))
                continue
            for job in jobs:
                if record.topic == self.ingest_topic:
                    try:
                        jobpath.start_slip(job, self.spec)
                    except PermanentError as exc:
                        futures.append(self._dead_letter(record, job, exc, attempt=1))
                        continue
                pending.append(_Work(record, job))

        retry = self.settings.retry
        attempt = 1
        while pending:
            for work in pending:
                work.job.attempt = attempt
            failed = self._attempt(pending, futures)
            if not failed:
                break
            if attempt >= retry.max_attempts:
                for work in failed:
                    exc = TransientError(f"gave up after {attempt} attempts: {work.error}", "retries_exhausted")
                    futures.append(self._dead_letter(work.record, work.job, exc, attempt))
                break
            RETRIES.labels(self.name).inc(len(failed))
            delay = min(retry.backoff_initial_s * 2 ** (attempt - 1), retry.backoff_max_s)
            log.warning("retrying after transient failures", extra={"count": len(failed), "delay_s": delay})
            time.sleep(delay)
            attempt += 1
            pending = failed
        for future in futures:
            future.get(timeout=self.settings.kafka.request_timeout_ms / 1000)

    def _attempt(self, pending: list[_Work], futures: list) -> list[_Work]:
        """One try at each job; returns the ones that failed transiently."""
        failed: list[_Work] = []
        ready: list[_Work] = []
        for work in pending:
            with job_context(work.job.job_id):
                try:
                    self._prepare(work)
                    ready.append(work)
                except PermanentError as exc:
                    futures.append(self._dead_letter(work.record, work.job, exc, work.job.attempt))
                except Exception as exc:  # storage outage, timeouts: worth another try
                    work.error = exc
                    failed.append(work)
        if not ready:
            return failed
        results, per_item_s = self.runner.run([w.item for w in ready], source="kafka")
        for work, result in zip(ready, results):
            with job_context(work.job.job_id):
                try:
                    if isinstance(result, Exception):
                        raise result
                    futures.append(self._forward(work, result, per_item_s))
                    IMAGES.labels(self.name, "kafka", "ok").inc()
                except (TransientError, MemoryError, OSError) as exc:
                    work.error = exc
                    failed.append(work)
                except StudiolineError as exc:
                    futures.append(self._dead_letter(work.record, work.job, exc, work.job.attempt))
                except Exception as exc:  # the step's own code failed: deterministic for this input
                    wrapped = PermanentError(f"{self.name} failed: {type(exc).__name__}: {exc}", "step_failed")
                    log.exception("step failed", extra={"step": self.name})
                    futures.append(self._dead_letter(work.record, work.job, wrapped, work.job.attempt))
        return failed

    # ---- one job --------------------------------------------------------------------------

    def _prepare(self, work: _Work) -> None:
        job = work.job
        params = jobpath.planned_params(self.spec, job)
        image_kind, image_ref, input_refs = jobpath.reads_for(self.spec, job)
        image = jobpath.Blob(self.storage.get(image_ref.bucket, image_ref.key), image_kind)
        inputs = {kind: jobpath.Blob(self.storage.get(ref.bucket, ref.key), kind) for kind, ref in input_refs.items()}
        prepared = jobpath.prepare(self.spec, params, image, inputs, self.settings.limits, job.job_id)
        if prepared.source is not None:  # what was read, not what the sender claimed
            job.source.MergeFrom(prepared.source)
        work.key_basis, work.item = prepared.key_basis, prepared.item
        HOP_SECONDS.labels(self.name).observe(max(0.0, time.time() - job.updated_at.ToNanoseconds() / 1e9))

    def _forward(self, work: _Work, output, per_item_s: float):
        job = work.job
        now = now_ts()
        queue_ms = max(0.0, (now.ToNanoseconds() - job.updated_at.ToNanoseconds()) / 1e6 - per_item_s * 1000)
        artifacts = store_outputs(
            self.storage,
            self.settings.s3.artifacts_bucket,
            job.tenant,
            job.source.sha256,
            self.name,
            work.key_basis,
            encode_outputs(self.spec, output),
        )
        job.timings.add(step=self.name, ms=per_item_s * 1000, queue_ms=queue_ms, worker=WORKER_ID)
        next_step = jobpath.advance(job, self.spec, output, artifacts, self.router)
        job.updated_at.CopyFrom(now_ts())
        k = self.settings.kafka
        topic = k.step_topic(next_step) if next_step else k.topic("done")
        log.info("step done", extra={"step": self.name, "next": topic, "ms": round(per_item_s * 1000, 1)})
        return self.producer.send(topic, key=job.job_id.encode(), value=job.SerializeToString())

    def _dead_letter(self, record, job: job_pb2.JobEvent | None, exc: Exception, attempt: int):
        code = getattr(exc, "code", "error")
        letter = job_pb2.DeadLetter(
            reason=str(exc),
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
        DEAD_LETTERS.labels(self.name, code).inc()
        IMAGES.labels(self.name, "kafka", "dead_letter").inc()
        log.warning("dead-lettered", extra={"step": self.name, "code": code, "reason": str(exc)})
        key = job.job_id.encode() if job is not None else record.key
        return self.producer.send(self.settings.kafka.topic("dlq"), key=key, value=letter.SerializeToString())

