"""A KafkaWorker run in this process against the embedded broker, watched: whether its loop is
alive, which offsets each batch held and how long each took (replays show as offsets seen
twice); and reading what the line published."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from studioline.shared import steps
from studioline.shared.config import Settings
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker


def step_runner(name: str) -> StepRunner:
    settings = Settings()
    step = steps.spec(name).step_class()(settings, ModelStore(settings.models.dir))
    step.load()
    return StepRunner(step)


def outside_producer(settings) -> KafkaProducer:
    """A producer as outside the line: records up to 4 MiB, over the line's own bound."""
    return KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", max_request_size=4 << 20)


class WatchedWorker:
    """Runs a KafkaWorker on a thread; `batches` holds (seconds, [(topic, partition, offset)])
    of every batch it handled, a replayed one included."""

    def __init__(self, runner: StepRunner, settings):
        router = Router.from_settings(settings) if runner.step.spec.routes else None
        self.worker = KafkaWorker(runner, settings, Storage(settings.s3), router)
        self.batches: list[tuple[float, list[tuple[str, int, int]]]] = []
        self.crashed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        handle = self.worker._process_polled

        def timed(batch):
            start = time.perf_counter()
            try:
                handle(batch)
            finally:
                places = [(r.topic, r.partition, r.offset) for recs in batch.values() for r in recs]
                self.batches.append((time.perf_counter() - start, places))

        self.worker._process_polled = timed

    def _run(self):
        try:
            self.worker.run(self._stop)
        except BaseException as exc:  # the loop died: what the tests must never see
            self.crashed = exc

    def __enter__(self) -> WatchedWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.crashed is None

    def replays(self) -> int:
        """Records handled more than once."""
        seen = Counter(place for _, places in self.batches for place in places)
        return sum(n - 1 for n in seen.values())

    def seconds_holding(self, places: set[tuple[str, int, int]]) -> float:
        """Time spent in the batches that held any of `places`, replays included: how long
        those records kept their partition from moving on."""
        return sum(seconds for seconds, held in self.batches if places & set(held))


def read_until(settings, topics: list[str], done, timeout_s: float = 120, settle_s: float = 2.0) -> dict[str, list]:
    """Records of `topics` (by topic, in order) from the start, until `done(records)` holds and
    nothing more came for `settle_s` (a duplicate would), or the time is up."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=f"{settings.kafka.group_prefix}reader-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=settings.kafka.session_timeout_ms,
                             heartbeat_interval_ms=settings.kafka.heartbeat_interval_ms)
    records: dict[str, list] = {t: [] for t in topics}
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=300).values():
                for r in recs:
                    records[r.topic].append(r)
                last = time.monotonic()
            if done(records) and time.monotonic() - last >= settle_s:
                break
    finally:
        consumer.close(autocommit=False)
    return records


def committed(settings, group: str, topic: str) -> int:
    """Offsets the group has committed on `topic`, summed over its partitions."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(settings.kafka.partitions))
    finally:
        consumer.close()
