"""What the Kafka loop and the gRPC servicers share: the dynamic batcher that runs a step on
decoded images, and turning step outputs into stored artifacts."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from google.protobuf.struct_pb2 import Struct

from studioline.shared.config import BatchingSettings
from studioline.shared.events import artifact_key
from studioline.shared.imageio import CONTENT_TYPES, encode_image, sha256_hex
from studioline.shared.metrics import BATCH_SIZE, QUEUE_SECONDS, STEP_SECONDS
from studioline.shared.jobpath import check_output
from studioline.shared.spec import StepSpec
from studioline.shared.step import Step, StepInput, StepOutput
from studioline.v1 import job_pb2

log = logging.getLogger(__name__)

# Lower runs first: a person waiting on a gRPC call goes ahead of catalogue work from Kafka.
PRIORITY = {"grpc": 0, "kafka": 1}


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    item: StepInput = field(compare=False)
    source: str = field(compare=False)
    future: Future = field(compare=False)
    enqueued: float = field(compare=False)


class StepRunner:
    """The service's dynamic batcher, shared by the Kafka loop and the gRPC front.

    Callers hand in items and block on their results; one thread gathers what is queued into a
    batch of up to `max_batch_size` items (interactive gRPC items first, then Kafka items, each
    in arrival order), waiting at most `max_queue_delay_ms` after the oldest queued item for the
    batch to fill, and runs it through `step.run_batch`. One batch is on the model at a time."""

    def __init__(self, step: Step, batching: BatchingSettings | None = None):
        self.step = step
        self.batching = batching or getattr(step.settings, "batching", None) or BatchingSettings()
        self._queue: list[_Queued] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{step.name}", daemon=True)
        self._thread.start()

    def submit(self, items: list[StepInput], source: str) -> list[Future]:
        """Queues items; each future resolves to a StepOutput or the item's exception and
        carries the compute seconds per item of its batch as `future.per_item_s`."""
        now = time.perf_counter()
        queued = [_Queued(PRIORITY[source], next(self._seq), item, source, Future(), now) for item in items]
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.step.name} is shutting down")
            for q in queued:
                heapq.heappush(self._queue, q)
            self._cond.notify()
        return [q.future for q in queued]

    def run(self, items: list[StepInput], source: str) -> tuple[list[StepOutput | Exception], float]:
        """Runs items through the batcher; returns per-item results and the mean compute
        seconds per item of the batches they ran in."""
        futures = self.submit(items, source)
        results = [f.result() for f in futures]
        per_item = sum(f.per_item_s for f in futures) / max(len(futures), 1)
        return results, per_item

    def close(self) -> None:
        """Finishes what is queued, then stops the batching thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _next_batch(self) -> list[_Queued] | None:
        limit = self.batching.max_batch_size
        delay = self.batching.max_queue_delay_ms / 1000
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            oldest = min(q.enqueued for q in self._queue)
            while len(self._queue) < limit and not self._closed:
                left = oldest + delay - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [heapq.heappop(self._queue) for _ in range(min(limit, len(self._queue)))]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.perf_counter()
            results = self._run_batch([q.item for q in batch])
            per_item = (time.perf_counter() - start) / len(batch)
            BATCH_SIZE.labels(self.step.name).observe(len(batch))
            for q, result in zip(batch, results):
                QUEUE_SECONDS.labels(self.step.name, q.source).observe(start - q.enqueued)
                STEP_SECONDS.labels(self.step.name, q.source).observe(per_item)
                q.future.per_item_s = per_item
                q.future.set_result(result)

    def _run_batch(self, items: list[StepInput]) -> list[StepOutput | Exception]:
        try:
            results = self.step.run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.step.name}.run_batch returned {len(results)} results for {len(items)} items")
            return results
        except Exception:  # a bug in a step's batch code: one item at a time keeps the others going
            log.exception("run_batch failed; running the batch's items one by one", extra={"step": self.step.name})
            return [self._run_one(item) for item in items]

    def _run_one(self, item: StepInput) -> StepOutput | Exception:
        try:
            (result,) = self.step.run_batch([item])
            return result
        except Exception as exc:
            return exc


@dataclass
class EncodedOutput:
    kind: str
    params: dict
    data: bytes
    content_type: str
    width: int
    height: int
    name: str  # file name inside the step's output folder


def encode_outputs(spec: StepSpec, output: StepOutput) -> list[EncodedOutput]:
    """The step's images encoded, after checking they are of the kinds its spec declares."""
    check_output(spec, output)
    encoded = []
    seen: dict[str, int] = {}
    for img in output.images:
        index = seen.get(img.kind, 0)
        seen[img.kind] = index + 1
        ext = "jpg" if img.format == "jpeg" else img.format
        suffix = "-".join(f"{v}" for _, v in sorted(img.params.items())).replace(":", "x").replace("/", "_")
        name = f"{img.kind}{'-' + suffix if suffix else ('-' + str(index) if index else '')}.{ext}"
        encoded.append(
            EncodedOutput(
                kind=img.kind,
                params=dict(img.params),
                data=encode_image(img.pixels, img.format),
                content_type=CONTENT_TYPES[img.format],
                width=int(img.pixels.shape[1]),
                height=int(img.pixels.shape[0]),
                name=name,
            )
        )
    return encoded


def store_outputs(
    storage, bucket: str, tenant: str, source_sha256: str, step: str, key_basis: dict, outputs: list[EncodedOutput]
) -> list[job_pb2.Artifact]:
    """Writes outputs under deterministic keys and returns their artifacts."""
    artifacts = []
    for out in outputs:
        key = artifact_key(tenant, source_sha256, step, key_basis, out.name)
        storage.put(bucket, key, out.data, out.content_type)
        artifacts.append(
            job_pb2.Artifact(
                kind=out.kind,
                step=step,
                params=dict_to_struct(out.params),
                ref=job_pb2.ImageRef(
                    bucket=bucket,
                    key=key,
                    sha256=sha256_hex(out.data),
                    content_type=out.content_type,
                    width=out.width,
                    height=out.height,
                ),
            )
        )
    return artifacts


def dict_to_struct(values: dict) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct
