"""The chaos suite: the real line, as processes on loopback, under crashes, poison records,
hostile images, memory limits, fuzzed events, SIGTERM and load; what it promises is in
docs/RELIABILITY.md, the figures go to bench/results/chaos.json (and chaos.png).

Infrastructure as the end-to-end tests and `make demo` run it: the embedded Kafka-protocol
broker (Tansu) and S3 endpoint (moto) on 127.0.0.1, each service a separate
`studioline serve` process (shared/launcher.py), with a fresh broker per part. A supervisor
restarts a service that exits unasked, as Kubernetes would (at most 3 times per case, 4 in
the memory part), and counts it: a crash loop shows as restarts and jobs without an outcome, never as
a hang. Each service gets the memory limit the Helm chart gives its container
(limits.memory_limit_bytes), so its memory budget is the cluster's.

Jobs: small real photos (C1 VITON garments and on-model shots, 192x256) from ../shared/data,
read in place. Every job asks for the forced chain `lifestyle` pruned to its mask
(classifier -> segmenter): two services and two hops per job, so 1,000 jobs run in minutes on
2 cores; the other steps share the same worker loop and job path.

Parts (each bounded in count and time, runnable alone with --part):
  fuzz     20,000 random JSON and 20,000 random-bytes ingest events through parse_ingest (and
           the bytes through parse_job, the step topics' parser), with hypothesis: outcomes by
           error code; anything not a StudiolineError is unclassified.
  poison   each poison record on its own partition, 4 good jobs behind it: outcome, error code,
           jobs lost, duplicates, seconds until the good jobs behind it are done.
  images   crafted hostile images (bench/hostile_images.py) over Kafka and over gRPC (classifier
           and segmenter), one at a time with each service's peak RSS; 4 concurrent bombs; and,
           when pip can fetch it, Pillow's own test corpus (its sdist, into a temporary folder).
  memory   the 16-bit bombs and the catalog generator's largest canvases with each service in a
           memory cgroup at its chart limit (a watchdog that kills over the limit where no cgroup
           can be made): OOM kills, restarts, what became of the job.
  kill     --events jobs, a worker SIGKILLed --kills times while they flow (segmenter and
           classifier in turn, restarted at once): lost, duplicates, time to recover.
  sigterm  SIGTERM to the segmenter, then the classifier, with Kafka batches and gRPC calls in
           flight: exit codes, the calls' status, lost, duplicates.
  health   grpc.health.v1 Check latency on one service while --health-clients concurrent step
           calls keep every gRPC worker busy.

    .venv/bin/python bench/chaos.py [--part poison --part kill ...] [--events 1000] [--kills 5]

Service and broker logs: out/chaos/<part>/ (git-ignored). A part's figures replace that part's
entry in chaos.json; the other parts' entries stay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_images  # noqa: E402
from common import RESULTS, ROOT, data_set, machine, now_iso, photos, plt, write_json  # noqa: E402

from studioline.shared import steps  # noqa: E402
from studioline.shared.launcher import ServiceProcesses, serving  # noqa: E402
from studioline.v1 import job_pb2  # noqa: E402

LOG_DIR = ROOT / "out" / "chaos"
PARTS = ("fuzz", "poison", "images", "memory", "kill", "sigterm", "health")
LINE = ("classifier", "segmenter")
# Every job: classifier, then the segmenter (the chain `lifestyle` pruned to its mask).
MASK_RECIPE = job_pb2.Recipe(chain="lifestyle", outputs=["mask"])
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
MIB = 1 << 20


# ---- infrastructure ------------------------------------------------------------------------


def chart_memory_limits() -> dict[str, int]:
    """Each service's container memory limit in the Helm chart's values, in bytes."""
    values = yaml.safe_load((ROOT / "helm" / "studioline" / "values.yaml").read_text())
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}

    def parse(text: str) -> int:
        return int(float(text[:-2]) * units[text[-2:]]) if text[-2:] in units else int(text)

    default = values["defaults"]["resources"]["limits"]["memory"]
    return {name: parse(((values["services"].get(name) or {}).get("resources") or {}).get("limits", {}).get("memory", default))
            for name in steps.names()}


def budget_bytes(limit: int) -> int:
    """The decoded-image budget a service derives from its limit (limits.memory_fraction)."""
    from studioline.shared.config import LimitSettings

    return int(limit * LimitSettings().memory_fraction)


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:  # it exited between the check and the read
        pass
    return 0


class MemoryCage:
    """A memory cgroup with a hard limit, under this process's own (v2, else v1 memory)."""

    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version

    @classmethod
    def create(cls, name: str, limit: int) -> "MemoryCage | None":
        """None where this machine lets us make none (not root, no controller, read-only)."""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, own = line.split(":", 2)
            if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
                base, version, limit_file = Path("/sys/fs/cgroup") / own.lstrip("/"), 2, "memory.max"
            elif "memory" in controllers.split(","):
                base, version, limit_file = Path("/sys/fs/cgroup/memory") / own.lstrip("/"), 1, "memory.limit_in_bytes"
            else:
                continue
            path = base / f"studioline-chaos-{os.getpid()}-{name}"
            try:
                path.mkdir(exist_ok=True)
                (path / limit_file).write_text(str(limit))
                return cls(path, version)
            except OSError:
                continue
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        text = (self.path / ("memory.events" if self.version == 2 else "memory.oom_control")).read_text()
        return next((int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("oom_kill ")), 0)

    def peak_bytes(self) -> int | None:
        peak = self.path / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        return int(peak.read_text()) if peak.exists() else None

    def reset_peak(self) -> None:
        try:
            (self.path / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")).write_text("0")
        except OSError:  # v2 before Linux 6.12 cannot reset it
            pass

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


class Services(ServiceProcesses):
    """ServiceProcesses with each service's own environment and memory limit (a cgroup, or a
    watchdog that SIGKILLs over it), a supervisor that restarts a service that exits unasked
    (counting it), and RSS readings (sampled every 50 ms; the kernel's high-water mark too)."""

    def __init__(self, env, log_dir, services, service_env, cages=None, watchdog=None, restarts=3):
        super().__init__(env, log_dir, services)
        self.common_env = env
        self.service_env = service_env
        self.cages = cages or {}
        self.watchdog = watchdog or {}  # service -> bytes, where no cgroup could hold it
        self.restart_budget = restarts
        self.lock = threading.RLock()
        self.down: set[str] = set()  # stopped or killed on purpose
        self.crashes: list[dict] = []
        self.restarts_left = dict.fromkeys(services, restarts)
        self.rss_peak: dict[str, float] = dict.fromkeys(services, 0.0)
        self.rss_start: dict[str, float] = dict.fromkeys(services, 0.0)
        self.watchdog_kills: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def __enter__(self) -> "Services":
        super().__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        super().__exit__(*exc)

    def start(self, service: str) -> None:
        with self.lock:
            self.env = {**self.common_env, **self.service_env.get(service, {})}
            super().start(service)
            if service in self.cages:
                self.cages[service].add(self.pid(service))
            self.down.discard(service)

    def kill(self, service: str) -> None:
        with self.lock:
            self.down.add(service)
        super().kill(service)

    def stop(self, service: str, timeout_s: float = 60) -> int:
        with self.lock:
            self.down.add(service)
        return super().stop(service, timeout_s)

    def wait_until_serving(self, timeout_s: float, services=None) -> None:
        """Until each service answers SERVING; a process that exits meanwhile may be restarted by
        the supervisor, so only the time limit fails it."""
        pending = set(services or self.services)
        deadline = time.monotonic() + timeout_s
        while pending:
            pending = {s for s in pending if not (self.alive(s) and serving(self.port(s)))}
            gone = {s for s in pending if not self.alive(s) and self.restarts_left[s] <= 0}
            if gone or (pending and time.monotonic() > deadline):
                why = "exited, restarts spent" if gone else f"not serving after {timeout_s:.0f} s"
                raise RuntimeError(f"{', '.join(sorted(pending))}: {why}; logs in {self.log_dir}")
            time.sleep(0.3 if pending else 0)

    def pid(self, service: str) -> int:
        return self.procs[service][0].pid

    def port(self, service: str) -> int:
        return self.procs[service][1]

    def alive(self, service: str) -> bool:
        return self.procs[service][0].poll() is None

    def new_case(self) -> None:
        """A fresh restart budget for each service and fresh RSS peaks (the kernel's too)."""
        with self.lock:
            self.restarts_left = dict.fromkeys(self.services, self.restart_budget)
            self.rss_peak = dict.fromkeys(self.services, 0.0)
            for service in self.services:
                self.rss_start[service] = status_kb(self.pid(service), "VmRSS") / 1024
                if self.alive(service):
                    try:
                        Path(f"/proc/{self.pid(service)}/clear_refs").write_text("5")
                    except OSError:
                        pass

    def peak_mb(self, service: str) -> float:
        """The larger of the sampled RSS and the live process's high-water mark, in MB."""
        hwm = status_kb(self.pid(service), "VmHWM") / 1024 if self.alive(service) else 0.0
        return round(max(self.rss_peak[service], hwm), 1)

    def growth_mb(self, service: str) -> float:
        """The peak less the RSS the case started with (a heap the allocator kept from earlier
        cases counts in the peak, not here)."""
        return round(max(self.peak_mb(service) - self.rss_start[service], 0.0), 1)

    def revive(self, timeout_s: float = 180) -> None:
        """Starts any service that is down (its restarts spent), and waits until all serve."""
        with self.lock:
            for service in self.services:
                if not self.alive(service):
                    self.start(service)
        self.wait_until_serving(timeout_s)

    def _supervise(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                for service in self.services:
                    proc = self.procs[service][0]
                    if proc.poll() is None:
                        rss = status_kb(proc.pid, "VmRSS") * 1024
                        self.rss_peak[service] = max(self.rss_peak[service], rss / MIB)
                        if service in self.watchdog and rss > self.watchdog[service]:
                            proc.kill()
                            self.watchdog_kills[service] += 1
                        continue
                    if service in self.down or self.restarts_left[service] <= 0:
                        continue
                    self.crashes.append({"service": service, "exit_code": proc.returncode, "t": time.monotonic()})
                    self.restarts_left[service] -= 1
                    self.start(service)


class Collector:
    """Every message on the done and dead-letter topics, from the start, with its arrival time."""

    def __init__(self, settings):
        from kafka import KafkaConsumer, TopicPartition

        k = settings.kafka
        self.done_topic, self.dlq_topic = k.topic("done"), k.topic("dlq")
        self.consumer = KafkaConsumer(**k.client_config(), enable_auto_commit=False, group_id=None,
                                      max_partition_fetch_bytes=4 * MIB)
        self.consumer.assign([TopicPartition(t, p) for t in (self.done_topic, self.dlq_topic) for p in range(k.partitions)])
        self.consumer.seek_to_beginning()
        self.done: dict[str, list[tuple[float, job_pb2.JobEvent]]] = {}
        self.letters: list[tuple[float, job_pb2.DeadLetter]] = []
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                with self.changed:
                    for r in records:
                        if r.topic == self.done_topic:
                            job = job_pb2.JobEvent.FromString(r.value)
                            self.done.setdefault(job.job_id, []).append((now, job))
                        else:
                            self.letters.append((now, job_pb2.DeadLetter.FromString(r.value)))
                    self.changed.notify_all()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()

    def wait(self, predicate, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout_s)

    def letters_for(self, job_id: str = "", where: tuple | None = None) -> list[tuple[float, job_pb2.DeadLetter]]:
        """Dead letters of a job id, or of a record's (topic, partition, offset)."""
        with self.changed:
            return [(t, d) for t, d in self.letters
                    if (job_id and d.job.job_id == job_id) or (where and (d.source_topic, d.partition, d.offset) == where)]

    def outcome_time(self, job_id: str) -> float | None:
        with self.changed:
            times = [t for t, _ in self.done.get(job_id, [])] + [t for t, d in self.letters if d.job.job_id == job_id]
        return min(times) if times else None

    def tally(self, job_ids) -> dict:
        """done, dead-lettered, lost, and duplicates (messages beyond the first) for these jobs."""
        with self.changed:
            letters = Counter(d.job.job_id for _, d in self.letters)
            done = {j: len(self.done.get(j, [])) for j in job_ids}
        return {
            "done": sum(1 for n in done.values() if n),
            "dead_lettered": sum(1 for j in job_ids if letters[j] and not done[j]),
            "lost": sum(1 for j in job_ids if not done[j] and not letters[j]),
            "duplicates_on_done": sum(max(n - 1, 0) for n in done.values()),
            "duplicate_dead_letters": sum(max(letters[j] - 1, 0) for j in job_ids),
        }


class Line:
    """A broker, an S3 endpoint, the topics and buckets, the services, a collector, a producer."""

    def __init__(self, part: str, services=LINE, env: dict | None = None, cages=None, watchdog=None,
                 partitions: int = 2, restarts: int = 3, limits: dict | None = None):
        self.part, self.service_names = part, services
        self.extra_env, self.cages, self.watchdog = env or {}, cages or {}, watchdog or {}
        self.partitions, self.restarts = partitions, restarts
        self.limits = limits or chart_memory_limits()
        self.stack = ExitStack()

    def __enter__(self) -> "Line":
        from kafka import KafkaProducer

        from studioline.shared.client import init_infrastructure
        from studioline.shared.config import Settings
        from studioline.shared.embedded import EmbeddedKafka, EmbeddedS3
        from studioline.shared.storage import Storage

        log_dir = LOG_DIR / self.part
        try:
            kafka = self.stack.enter_context(EmbeddedKafka(log_file=log_dir / "broker.log"))
            s3 = self.stack.enter_context(EmbeddedS3())
            prefix = f"chaos{uuid.uuid4().hex[:6]}."
            self.env = {
                "STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
                "STUDIOLINE_KAFKA__TOPIC_PREFIX": prefix,
                "STUDIOLINE_KAFKA__GROUP_PREFIX": prefix,
                "STUDIOLINE_KAFKA__PARTITIONS": str(self.partitions),
                "STUDIOLINE_KAFKA__MAX_BATCH": "4",
                # Tansu's joins and rebalances take about half the session timeout.
                "STUDIOLINE_KAFKA__SESSION_TIMEOUT_MS": "3000",
                "STUDIOLINE_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
                "STUDIOLINE_KAFKA__MAX_POLL_INTERVAL_MS": "120000",
                "STUDIOLINE_S3__ENDPOINT": s3.endpoint,
                "STUDIOLINE_S3__SECURE": "false",
                "STUDIOLINE_S3__ACCESS_KEY": s3.access_key,
                "STUDIOLINE_S3__SECRET_KEY": s3.secret_key,
                "STUDIOLINE_S3__INCOMING_BUCKET": prefix.replace(".", "-") + "incoming",
                "STUDIOLINE_S3__ARTIFACTS_BUCKET": prefix.replace(".", "-") + "artifacts",
                "STUDIOLINE_S3__MODELS_BUCKET": prefix.replace(".", "-") + "models",
                "STUDIOLINE_RETRY__MAX_ATTEMPTS": "3",
                "STUDIOLINE_RETRY__BACKOFF_INITIAL_S": "0.05",
                "STUDIOLINE_RETRY__BACKOFF_MAX_S": "0.2",
                "STUDIOLINE_LOG_LEVEL": "WARNING",
                # Loopback only: plain-text gRPC, said so explicitly, bound to 127.0.0.1.
                "STUDIOLINE_GRPC__INSECURE": "true",
                "STUDIOLINE_GRPC__BIND_ADDRESS": "127.0.0.1",
                **self.extra_env,
            }
            with mock.patch.dict(os.environ, self.env):
                self.settings = Settings()
            init_infrastructure(self.settings)
            self.storage = Storage(self.settings.s3)
            service_env = {s: {"STUDIOLINE_LIMITS__MEMORY_LIMIT_BYTES": str(self.limits[s])} for s in self.service_names}
            self.services = self.stack.enter_context(
                Services(self.env, log_dir, self.service_names, service_env, self.cages, self.watchdog, self.restarts))
            self.services.wait_until_serving(timeout_s=300)
            self.collector = Collector(self.settings)
            self.stack.callback(self.collector.close)
            self.producer = KafkaProducer(**self.settings.kafka.client_config(), acks="all", linger_ms=2,
                                          max_request_size=8 * MIB, request_timeout_ms=30_000)
            self.stack.callback(self.producer.close)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    def topic(self, name: str) -> str:
        return self.settings.kafka.topic(name)

    def upload(self, name: str, data: bytes) -> str:
        self.storage.put(self.settings.s3.incoming_bucket, name, data, "application/octet-stream")
        return name

    def job(self, key: str) -> job_pb2.JobEvent:
        from studioline.shared.events import new_job

        return new_job(self.settings.s3.incoming_bucket, key, tenant=self.settings.tenant,
                       job_id=str(uuid.uuid4()), recipe=MASK_RECIPE)

    def planned(self, key: str) -> job_pb2.JobEvent:
        """A job as the classifier passes it on: its slip at the segmenter."""
        from studioline.shared.routing import Router

        job = self.job(key)
        job.slip.CopyFrom(Router.from_settings(self.settings).plan("lifestyle", MASK_RECIPE))
        return job

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None):
        """Publishes and waits for the broker's answer: RecordMetadata, or the exception."""
        try:
            return self.producer.send(topic, key=key, value=value, partition=partition).get(timeout=60)
        except Exception as exc:  # the broker's refusal is a finding, not a harness failure
            return exc

    def send_job(self, job: job_pb2.JobEvent, topic: str = "ingest", partition: int | None = None):
        return self.send(self.topic(topic), job.SerializeToString(), job.job_id.encode(), partition)

    def outcome(self, job_id: str = "", where: tuple | None = None) -> dict | None:
        """What became of one job (or of the record at `where`): done, or its dead letter."""
        if job_id and job_id in self.collector.done:
            return {"outcome": "processed"}
        letters = self.collector.letters_for(job_id, where)
        if not letters:
            return None
        _, letter = letters[0]
        out = {"outcome": "dead-lettered", "error_code": letter.error_code, "step": letter.step, "attempt": letter.attempt,
               "reason": letter.reason[:240], "dead_letters": len(letters)}
        if letter.HasField("raw_ref"):
            ref = letter.raw_ref
            kept = self.storage.get(ref.bucket, ref.key)
            out["bulk_in_s3"] = {"key": ref.key, "bytes": len(kept), "sha256_ok": hashlib.sha256(kept).hexdigest() == ref.sha256}
        return out


def grpc_call(port: int, service: str, data: bytes, timeout_s: float = 120, params: dict | None = None,
              inputs: dict | None = None) -> tuple[str, str, float]:
    """One step call with the image inline: (status code name, details, seconds)."""
    import grpc
    from google.protobuf.struct_pb2 import Struct

    from studioline.shared.client import step_call
    from studioline.v1 import steps_pb2

    struct = Struct()
    struct.update(params or {})
    request = steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=data), params=struct,
                                    inputs={k: steps_pb2.ImageInput(data=v) for k, v in (inputs or {}).items()})
    start = time.perf_counter()
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
        try:
            step_call(channel, service)(request, timeout=timeout_s)
            code, details = "OK", ""
        except grpc.RpcError as exc:
            code, details = exc.code().name, (exc.details() or "")[:240]
    return code, details, round(time.perf_counter() - start, 3)


def health_ms(channel, service: str, timeout_s: float = 5) -> float | None:
    """One grpc.health.v1 Check, in ms; None if it failed or did not say SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    start = time.perf_counter()
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError:
        return None
    return (time.perf_counter() - start) * 1000 if reply.status == health_pb2.HealthCheckResponse.SERVING else None


def latency(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1), "over_100ms": int((a > 100).sum()), "over_1s": int((a > 1000).sum())}


def line_photos(n: int) -> list[Path]:
    """Small real photos: C1 garments on white and on-model shots (192x256), a seeded sample."""
    c1 = data_set("C1_viton_tryon_256")
    pool = photos(c1 / "cloth") + photos(c1 / "image")
    return random.Random(5).sample(pool, min(n, len(pool)))


def upload_photos(line: Line, n: int) -> list[str]:
    return [line.upload(f"photos/{i:03d}-{p.name}", p.read_bytes()) for i, p in enumerate(line_photos(n))]


# ---- fuzz ----------------------------------------------------------------------------------


def part_fuzz(args) -> dict:
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from studioline.shared.errors import StudiolineError
    from studioline.shared.events import new_job, parse_ingest, parse_job

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                          max_leaves=20)
    near = lambda good: st.one_of(st.just(good), st.just(good), st.just(good), values)  # noqa: E731 - mostly the valid value
    record = st.fixed_dictionaries({
        "eventName": near("s3:ObjectCreated:Put"),
        "s3": st.one_of(values, st.fixed_dictionaries({
            "bucket": st.one_of(values, st.fixed_dictionaries({"name": near("incoming")})),
            "object": st.one_of(values, st.fixed_dictionaries({"key": near("a+b.jpg"), "eTag": values, "versionId": values})),
        })),
    })
    notification = st.fixed_dictionaries({"Records": st.one_of(values, st.lists(st.one_of(record, values), max_size=3))},
                                         optional={"EventName": values})
    recipe = st.fixed_dictionaries({}, optional={"outputs": near(["mask"]), "chain": near("lifestyle"),
                                                 "step_params": st.one_of(values, st.dictionaries(st.sampled_from(["segmenter", "x"]), values))})
    attributes = st.dictionaries(st.text(max_size=12), st.text(max_size=40) | st.integers() | st.floats(), max_size=4)
    job = st.fixed_dictionaries({"bucket": near("incoming"), "key": near("a.jpg")},
                                optional={"recipe": st.one_of(recipe, recipe, values), "attributes": st.one_of(attributes, values),
                                          "job_id": st.one_of(st.text(max_size=40), values), "tenant": values, "version": values})
    depth = st.integers(1, 200_000)
    deep = st.one_of(depth.map(lambda d: '{"a":' * d + "1" + "}" * d), depth.map(lambda d: '{"Records":' + "[" * d + "]" * d + "}"))
    documents = st.tuples(st.one_of(job, job, notification, values), st.booleans()).map(
        lambda t: json.dumps(t[0], ensure_ascii=t[1]).encode("utf-8", "surrogatepass"))
    json_events = st.one_of(documents, documents, documents, deep.map(str.encode))
    template = new_job("incoming", "a.jpg", tenant="t", job_id="j", recipe=MASK_RECIPE).SerializeToString()
    mutated = st.lists(st.tuples(st.integers(0, len(template) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda flips: bytes(_flip(template, flips)))
    byte_events = st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: b"{" + b), mutated)

    def run(strategy, parsers, n):
        outcomes, unclassified, examples, times, slowest = Counter(), [], [], [], (0.0, b"")

        # derandomize: the same events on every run, so the figures can be re-checked.
        @hsettings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], derandomize=True,
                   suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(value):
            nonlocal slowest
            for parser in parsers:
                start = time.perf_counter()
                try:
                    parser(value)
                    outcomes[f"{parser.__name__}: ok"] += 1
                except StudiolineError as exc:
                    outcomes[f"{parser.__name__}: {exc.code}"] += 1
                    if exc.code == "parser_bug" and len(examples) < 5:
                        examples.append({"value": value[:200].decode("latin-1"), "error": str(exc)[:200]})
                except BaseException as exc:  # noqa: BLE001 - exactly what is being counted
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    unclassified.append({"value": value[:200].decode("latin-1"), "error": f"{type(exc).__name__}: {exc}"[:200]})
                times.append(time.perf_counter() - start)
                slowest = max(slowest, (times[-1], value), key=lambda t: t[0])

        start = time.perf_counter()
        one()
        events = sum(outcomes.values()) + len(unclassified)
        return {"events": events // len(parsers), "parsers": [p.__name__ for p in parsers],
                "unclassified": len(unclassified), "unclassified_examples": unclassified[:5],
                "parser_bug": sum(v for k, v in outcomes.items() if k.endswith("parser_bug")), "parser_bug_examples": examples,
                "outcomes": dict(outcomes.most_common()), "seconds": round(time.perf_counter() - start, 1),
                # The slowest single parse on a loaded 2-core machine is mostly a pause of the machine's.
                "parse_ms": {"p50": round(float(np.percentile(times, 50)) * 1000, 3),
                             "p99": round(float(np.percentile(times, 99)) * 1000, 3), "max": round(slowest[0] * 1000, 1)},
                "slowest_example": {"bytes": len(slowest[1]), "starts": slowest[1][:80].decode("latin-1")}}

    ingest = lambda v: parse_ingest(v, "fuzz")  # noqa: E731
    ingest.__name__ = "parse_ingest"
    return {"json": run(json_events, [ingest], args.fuzz_n), "bytes": run(byte_events, [ingest, parse_job], args.fuzz_n)}


def _flip(data: bytes, flips) -> bytearray:
    out = bytearray(data)
    for at, value in flips:
        out[at] = value
    return out


# ---- poison --------------------------------------------------------------------------------


def poison_cases(line: Line, photo_key: str) -> list[tuple[str, str, object, str]]:
    """(name, topic, value, job id it carries or ""): what the issue saw stop the line, and kin."""
    rng = np.random.default_rng(12)
    incoming = line.settings.s3.incoming_bucket
    big_attr = line.job(photo_key)
    big_attr.attributes["blob"] = "x" * 1_000_000
    step_big = line.planned(photo_key)
    step_big.attributes["blob"] = "x" * 1_000_000
    # Read within kafka.max_message_bytes, its next event (artifacts, timing, report added) over it.
    growing = line.planned(photo_key)
    growing.attributes["blob"] = ""
    growing.attributes["blob"] = "x" * (line.settings.kafka.max_message_bytes - 300 - growing.ByteSize())
    past_end = line.planned(photo_key)
    past_end.slip.position = 99
    other_step = line.planned(photo_key)
    other_step.slip.steps[0].step = "matting"
    bad_params = line.planned(photo_key)
    bad_params.slip.steps[0].params_json = "{not json"
    json_job = lambda **extra: json.dumps({"bucket": incoming, "key": photo_key, "job_id": extra.pop("job_id"),  # noqa: E731
                                           "recipe": {"chain": "lifestyle", "outputs": ["mask"]}, **extra}).encode()
    ids = {n: str(uuid.uuid4()) for n in ("json_attr", "nan", "chain", "missing", "ints")}
    notification = lambda key: json.dumps({"Records": [{"eventName": "s3:ObjectCreated:Put",  # noqa: E731
                                                        "s3": {"bucket": {"name": incoming}, "object": {"key": key}}}]}).encode()
    return [
        ("control (no poison)", "ingest", None, "control"),
        ("{\"Records\": [1]}", "ingest", b'{"Records": [1]}', ""),
        ("JSON nested 100,000 deep", "ingest", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, ""),
        ("Records nested 100,000 deep", "ingest", b'{"Records":' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
        ("S3 notification, key is a number", "ingest", notification(123), ""),
        ("S3 notification, key is an object", "ingest", notification({"k": 1}), ""),
        ("tombstone (null value)", "ingest", None, ""),
        ("empty value", "ingest", b"", ""),
        ("random bytes (4 KB)", "ingest", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), ""),
        ("1 MB raw value", "ingest", rng.integers(0, 256, 1_000_000, dtype=np.uint8).tobytes(), ""),
        ("2 MB raw value (over max.message.bytes)", "ingest", rng.integers(0, 256, 2_000_000, dtype=np.uint8).tobytes(), ""),
        ("JSON job, 1 MB attribute", "ingest", json_job(job_id=ids["json_attr"], attributes={"blob": "x" * 1_000_000}), ids["json_attr"]),
        ("JobEvent, 1 MB attribute", "ingest", big_attr.SerializeToString(), big_attr.job_id),
        ("JSON job, NaN parameter", "ingest", json_job(job_id=ids["nan"]).replace(b'"outputs"', b'"step_params": {"segmenter": {"escalate_below": NaN}}, "outputs"'), ids["nan"]),
        ("JSON job, unknown chain", "ingest", json_job(job_id=ids["chain"]).replace(b'"lifestyle"', b'"no-such-chain"'), ids["chain"]),
        ("JSON job, object not in S3", "ingest", json_job(job_id=ids["missing"]).replace(photo_key.encode(), b"nowhere/missing.jpg"), ids["missing"]),
        ("JSON job, 100,000-digit integer", "ingest", json_job(job_id=ids["ints"])[:-1] + b', "n": ' + b"9" * 100_000 + b"}", ids["ints"]),
        ("tombstone (null value)", "step", None, ""),
        ("random bytes (4 KB)", "step", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), ""),
        ("JSON on a step topic", "step", json_job(job_id=str(uuid.uuid4())), ""),
        ("JobEvent, 1 MB attribute", "step", step_big.SerializeToString(), step_big.job_id),
        ("JobEvent that outgrows max.message.bytes at the step", "step", growing.SerializeToString(), growing.job_id),
        ("JobEvent, slip position 99", "step", past_end.SerializeToString(), past_end.job_id),
        ("JobEvent, slip names another step", "step", other_step.SerializeToString(), other_step.job_id),
        ("JobEvent, parameters not JSON", "step", bad_params.SerializeToString(), bad_params.job_id),
    ]


def part_poison(args) -> dict:
    behind = 4
    with Line("poison", partitions=32) as line:
        photo_keys = upload_photos(line, 8)
        cases = poison_cases(line, photo_keys[0])
        warm = [line.job(k) for k in photo_keys]  # the first jobs pay for connections and caches
        for job in warm:
            line.send_job(job)
        line.collector.wait(lambda: all(line.collector.outcome_time(j.job_id) for j in warm), args.case_timeout)
        step_topic = line.topic("step.segmenter")
        results = []
        for partition, (name, where, value, carried) in enumerate(cases):
            line.services.revive()
            line.services.new_case()
            crashes_before = len(line.services.crashes)
            topic = line.topic("ingest") if where == "ingest" else step_topic
            start = time.monotonic()
            meta = None
            if carried != "control":  # a tombstone has a key: compaction is what it is for
                meta = line.send(topic, value, key=b"poison" if value is None else None, partition=partition)
            goods = [line.job(photo_keys[1 + i % 7]) if where == "ingest" else line.planned(photo_keys[1 + i % 7]) for i in range(behind)]
            for job in goods:
                line.send_job(job, "ingest" if where == "ingest" else "step.segmenter", partition)
            refused = isinstance(meta, Exception)
            place = (topic, partition, meta.offset) if meta is not None and not refused else None
            good_ids = [j.job_id for j in goods]

            def settled():
                poison_known = carried == "control" or refused or line.outcome(carried if carried else "", place) is not None
                return poison_known and all(j in line.collector.done or line.collector.letters_for(j) for j in good_ids)

            line.collector.wait(settled, args.case_timeout)
            finished = [line.collector.outcome_time(j) for j in good_ids]
            entry = {"case": name, "topic": "ingest" if where == "ingest" else "step.segmenter",
                     "bytes": None if value is None else len(value)}
            if carried != "control":
                entry.update({"outcome": f"refused by the broker: {type(meta).__name__}"} if refused else
                             (line.outcome(carried, place) or {"outcome": "no outcome"}))
                if carried and not refused and carried in line.collector.done:
                    entry["done_messages"] = len(line.collector.done[carried])
            tally = line.collector.tally(good_ids)
            entry.update({
                "good_jobs_behind": behind, "good_done": tally["done"], "good_lost": tally["lost"],
                "good_dead_lettered": tally["dead_lettered"], "duplicates_on_done": tally["duplicates_on_done"],
                "move_on_s": round(max(finished) - start, 2) if all(finished) else None,
                "service_restarts": len(line.services.crashes) - crashes_before,
                "services_alive": all(line.services.alive(s) for s in LINE),
            })
            print(f"poison {name!r:48} {entry.get('outcome', '-'):>16} {entry.get('error_code', ''):>14} "
                  f"good {entry['good_done']}/{behind} move-on {entry['move_on_s']} s restarts {entry['service_restarts']}", flush=True)
            results.append(entry)
        results.extend(codec_cases(line, photo_keys, args.case_timeout))
    return {"cases": results, "chain": ["classifier", "segmenter"],
            "lost": sum(r["good_lost"] for r in results) + sum(1 for r in results if r.get("outcome") == "no outcome"),
            "duplicates_on_done": sum(r["duplicates_on_done"] for r in results)}


def codec_cases(line: Line, photo_keys: list[str], timeout_s: float) -> list[dict]:
    """Good jobs published as most platforms publish them (librdkafka), in every codec."""
    try:
        from confluent_kafka import Producer
    except ImportError:
        return [{"case": "compressed batches", "outcome": "skipped: confluent-kafka is not installed"}]
    results = []
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        producer = Producer({"bootstrap.servers": line.settings.kafka.bootstrap_servers, "compression.type": codec,
                             "enable.idempotence": False})
        jobs = [line.job(photo_keys[i]) for i in range(4)]
        start = time.monotonic()
        for job in jobs:
            producer.produce(line.topic("ingest"), value=job.SerializeToString(), key=None, headers=[("origin", b"chaos")])
        producer.flush(30)
        ids = [j.job_id for j in jobs]
        line.collector.wait(lambda: all(line.collector.outcome_time(j) for j in ids), timeout_s)
        tally = line.collector.tally(ids)
        finished = [line.collector.outcome_time(j) for j in ids]
        letters = [d.error_code for j in ids for _, d in line.collector.letters_for(j)]
        results.append({"case": f"4 jobs, librdkafka {codec} batch, null keys, a header", "topic": "ingest",
                        "outcome": "processed" if tally["done"] == 4 else f"dead-lettered: {sorted(set(letters))}",
                        "good_jobs_behind": 0, "good_done": tally["done"], "good_lost": tally["lost"],
                        "good_dead_lettered": tally["dead_lettered"], "duplicates_on_done": tally["duplicates_on_done"],
                        "move_on_s": round(max(finished) - start, 2) if all(finished) else None,
                        "service_restarts": 0, "services_alive": all(line.services.alive(s) for s in LINE)})
        print(f"codec {codec}: {results[-1]['outcome']}", flush=True)
    return results


# ---- hostile images ------------------------------------------------------------------------


def part_images(args) -> dict:
    corpus = hostile_images.crafted()
    limits = chart_memory_limits()
    out: dict = {"memory_limit_mb": {s: limits[s] // MIB for s in LINE},
                 "budget_mb": {s: budget_bytes(limits[s]) // MIB for s in LINE}}
    with Line("images") as line:
        idle = {s: round(status_kb(line.services.pid(s), "VmRSS") / 1024, 1) for s in LINE}
        out["idle_rss_mb"] = idle
        kafka_rows, grpc_rows = [], []
        for name, case in corpus.items():
            line.services.revive()
            line.services.new_case()
            crashes = len(line.services.crashes)
            key = line.upload(f"hostile/{name}", case.data)
            job = line.job(key)
            start = time.monotonic()
            line.send_job(job)
            line.collector.wait(lambda: line.collector.outcome_time(job.job_id) is not None, args.case_timeout)
            result = line.outcome(job.job_id) or {"outcome": "no outcome"}
            row = {"file": name, "bytes": len(case.data), "expect": case.expect, "note": case.note, **result,
                   "seconds": round(time.monotonic() - start, 2),
                   "peak_rss_mb": {s: line.services.peak_mb(s) for s in LINE},
                   "growth_mb": {s: line.services.growth_mb(s) for s in LINE},
                   "service_restarts": len(line.services.crashes) - crashes}
            kafka_rows.append(row)
            print(f"kafka {name:24} {row['outcome']:>14} {row.get('error_code', ''):>18} {row['seconds']:6.2f}s "
                  f"rss {row['peak_rss_mb']}", flush=True)
        for name, case in corpus.items():
            for service in LINE:
                line.services.revive()
                line.services.new_case()
                crashes = len(line.services.crashes)
                code, details, seconds = grpc_call(line.services.port(service), service, case.data, args.case_timeout)
                grpc_rows.append({"file": name, "service": service, "expect": case.expect, "code": code, "details": details,
                                  "seconds": seconds, "peak_rss_mb": line.services.peak_mb(service),
                                  "growth_mb": line.services.growth_mb(service), "service_restarts": len(line.services.crashes) - crashes})
                print(f"grpc {service:10} {name:24} {code:>18} {seconds:6.2f}s {grpc_rows[-1]['peak_rss_mb']} MB {details[:80]}", flush=True)
        out["crafted_kafka"] = kafka_rows
        out["crafted_grpc"] = grpc_rows
        out["concurrent"] = [concurrent_bombs(line, "classifier", "png_grey16_7000", corpus, 4, args.case_timeout),
                             concurrent_bombs(line, "segmenter", "png_rgba16_7000", corpus, 4, args.case_timeout)]
        if args.pillow:
            out["pillow_corpus"] = pillow_part(line, args.case_timeout)
    out["summary"] = images_summary(out)
    return out


def concurrent_bombs(line: Line, service: str, name: str, corpus, n: int, timeout_s: float) -> dict:
    line.services.revive()
    line.services.new_case()
    crashes = len(line.services.crashes)
    port, data = line.services.port(service), corpus[name].data
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: grpc_call(port, service, data, timeout_s), range(n)))
    row = {"service": service, "file": name, "concurrent": n, "codes": dict(Counter(r[0] for r in results)),
           "details": sorted({r[1][:160] for r in results}), "max_seconds": max(r[2] for r in results),
           "peak_rss_mb": line.services.peak_mb(service), "growth_mb": line.services.growth_mb(service),
           "service_restarts": len(line.services.crashes) - crashes}
    print(f"concurrent {n} x {name} -> {service}: {row['codes']} peak {row['peak_rss_mb']} MB", flush=True)
    return row


def pillow_part(line: Line, timeout_s: float) -> dict:
    """Pillow's Tests/images: every file over gRPC to the classifier (the first decoder of every
    job; the segmenter decodes with the same code), its fuzzing finds over Kafka."""
    with tempfile.TemporaryDirectory(prefix="pillow-corpus-") as tmp:
        files = hostile_images.pillow_corpus(Path(tmp))
    if not files:
        return {"fetched": False}
    line.services.revive()
    line.services.new_case()
    crashes = len(line.services.crashes)
    port = line.services.port("classifier")
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(files, pool.map(lambda d: grpc_call(port, "classifier", d, timeout_s), files.values())))
    codes = Counter(code for code, _, _ in results.values())
    bad = {name: f"{code}: {details[:160]}" for name, (code, details, _) in results.items()
           if code in ("INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "UNAVAILABLE", "RESOURCE_EXHAUSTED")}
    grpc_part = {"files": len(files), "codes": dict(codes.most_common()), "not_ok_or_invalid": bad,
                 "slowest_s": max(s for _, _, s in results.values()), "peak_rss_mb": line.services.peak_mb("classifier"),
                 "service_restarts": len(line.services.crashes) - crashes}
    print(f"pillow corpus over gRPC: {grpc_part['codes']}", flush=True)
    hostile = {n: d for n, d in files.items() if hostile_images.is_pillow_hostile(n)}
    line.services.revive()
    line.services.new_case()
    crashes = len(line.services.crashes)
    jobs = {}
    for name, data in hostile.items():
        job = line.job(line.upload(f"pillow/{name}", data))
        line.send_job(job)
        jobs[job.job_id] = name
    line.collector.wait(lambda: all(line.collector.outcome_time(j) for j in jobs), max(timeout_s, 300))
    outcomes = Counter()
    for job_id in jobs:
        result = line.outcome(job_id) or {"outcome": "no outcome"}
        outcomes[f"{result['outcome']}: {result.get('error_code', '')}".rstrip(": ")] += 1
    kafka_part = {"files": len(jobs), "outcomes": dict(outcomes.most_common()), **line.collector.tally(list(jobs)),
                  "peak_rss_mb": {s: line.services.peak_mb(s) for s in LINE},
                  "service_restarts": len(line.services.crashes) - crashes}
    print(f"pillow hostile subset over Kafka: {kafka_part['outcomes']}", flush=True)
    return {"fetched": True, "grpc_classifier": grpc_part, "kafka_hostile_subset": kafka_part}


def images_summary(out: dict) -> dict:
    grpc_codes = Counter(r["code"] for r in out["crafted_grpc"])
    for row in out["concurrent"]:
        grpc_codes.update(row["codes"])
    pillow = out.get("pillow_corpus", {}).get("grpc_classifier", {})
    grpc_codes.update(pillow.get("codes", {}))
    rows = out["crafted_kafka"]
    return {
        "grpc_codes": dict(grpc_codes.most_common()),
        "grpc_internal": grpc_codes.get("INTERNAL", 0), "grpc_unknown": grpc_codes.get("UNKNOWN", 0),
        "kafka_outcomes": dict(Counter(f"{r['outcome']}: {r.get('error_code', '')}".rstrip(": ") for r in rows).most_common()),
        "kafka_lost": sum(1 for r in rows if r["outcome"] == "no outcome"),
        "kafka_retries_exhausted": [r["file"] for r in rows if r.get("error_code") == "retries_exhausted"],
        "kafka_dead_lettered_after_retries": [r["file"] for r in rows if r.get("attempt", 1) > 1],
        "expected_rejection_processed": [r["file"] for r in rows if r["expect"] == "rejected" and r["outcome"] == "processed"],
        "service_restarts": sum(r["service_restarts"] for r in rows + out["crafted_grpc"]),
        "peak_rss_mb": {s: max([r["peak_rss_mb"][s] for r in rows] + [r["peak_rss_mb"] for r in out["crafted_grpc"] + out["concurrent"]
                                                                     if r["service"] == s]) for s in LINE},
        "growth_mb": {s: max([r["growth_mb"][s] for r in rows] + [r["growth_mb"] for r in out["crafted_grpc"] + out["concurrent"]
                                                                 if r["service"] == s]) for s in LINE},
    }


# ---- memory limit --------------------------------------------------------------------------


def part_memory(args) -> dict:
    limits = chart_memory_limits()
    services = ("classifier", "segmenter", "catalog-generator")
    cages = {s: MemoryCage.create(s, limits[s]) for s in services}
    contained = all(cages.values())
    if not contained:  # no cgroup here: a watchdog holds the same limits, less exactly
        for cage in cages.values():
            if cage:
                cage.remove()
        cages = {}
    corpus = hostile_images.crafted()
    results = []
    try:
        # kafka.max_batch at its default (8, not the suite's 4): a whole poll is prepared at once.
        with Line("memory", services=services, env={"STUDIOLINE_KAFKA__MAX_BATCH": "8"}, cages=cages,
                  watchdog={} if contained else {s: limits[s] for s in services}, restarts=4) as line:
            photo_keys = upload_photos(line, 4)

            def case(name: str, involved: tuple[str, ...], run) -> None:
                line.services.revive()
                line.services.new_case()
                for cage in cages.values():
                    cage.reset_peak()
                crashes = len(line.services.crashes)
                ooms = {s: cages[s].oom_kills() if s in cages else line.services.watchdog_kills[s] for s in involved}
                start = time.monotonic()
                detail = run()
                seconds = time.monotonic() - start
                time.sleep(1)  # a process that died at the end of the case: the supervisor sees it
                row = {"case": name, "seconds": round(seconds, 1), **detail, "services": {}}
                for s in involved:
                    cgroup_peak = (cages[s].peak_bytes() or 0) / MIB if s in cages else 0
                    oom = (cages[s].oom_kills() if s in cages else line.services.watchdog_kills[s]) - ooms[s]
                    restarts = sum(1 for c in line.services.crashes[crashes:] if c["service"] == s)
                    row["services"][s] = {"limit_mb": limits[s] // MIB, "budget_mb": budget_bytes(limits[s]) // MIB,
                                          "peak_rss_mb": round(max(line.services.peak_mb(s), cgroup_peak), 1),
                                          "growth_mb": line.services.growth_mb(s), "oom_kills": oom, "restarts": restarts}
                row["survived"] = all(v["oom_kills"] == 0 and v["restarts"] == 0 for v in row["services"].values())
                print(f"memory {name}: {row}", flush=True)
                results.append(row)

            def over_kafka(files: list[str]) -> dict:
                jobs = [line.job(line.upload(f"bomb/{i}-{f}", corpus[f].data)) for i, f in enumerate(files)]
                goods = [line.job(k) for k in photo_keys]
                for job in jobs + goods:
                    line.send_job(job, partition=0)
                ids = [j.job_id for j in jobs + goods]
                start = time.monotonic()
                line.collector.wait(lambda: all(line.collector.outcome_time(j) for j in ids), args.case_timeout * 2)
                finished = [line.collector.outcome_time(j) for j in ids]
                return {"outcomes": [line.outcome(j.job_id) or {"outcome": "no outcome"} for j in jobs],
                        "good_jobs_behind": len(goods), **{f"good_{k}": v for k, v in line.collector.tally([g.job_id for g in goods]).items()},
                        "move_on_s": round(max(finished) - start, 1) if all(finished) else None}

            def over_grpc(service: str, file: str, n: int, **call) -> dict:
                data = corpus[file].data if file else hostile_images.encoded(hostile_images.photo(640, 480), "JPEG")
                port = line.services.port(service)
                with ThreadPoolExecutor(n) as pool:
                    calls = list(pool.map(lambda _: grpc_call(port, service, data, args.case_timeout, **call), range(n)))
                return {"codes": dict(Counter(c[0] for c in calls)), "details": sorted({c[1][:200] for c in calls}),
                        "max_call_s": max(c[2] for c in calls)}

            cutout = hostile_images.encoded(np.dstack([hostile_images.photo(640, 480), np.full((480, 640), 255, np.uint8)]), "PNG")
            canvases = [[8192 - 16 * i, 8192 - 16 * i] for i in range(8)]
            case("16-bit RGBA 7000x7000 over Kafka, 4 good jobs behind", LINE, lambda: over_kafka(["png_rgba16_7000"]))
            case("8 x 16-bit grey 7000x7000 over Kafka (one poll)", LINE, lambda: over_kafka(["png_grey16_7000"] * 8))
            case("4 concurrent 16-bit RGBA 7000x7000 over gRPC", ("classifier",), lambda: over_grpc("classifier", "png_rgba16_7000", 4))
            case("4 concurrent 16-bit grey 7000x7000 over gRPC", ("classifier",), lambda: over_grpc("classifier", "png_grey16_7000", 4))
            case("4 concurrent 16-bit grey 7000x7000 over gRPC", ("segmenter",), lambda: over_grpc("segmenter", "png_grey16_7000", 4))
            case("8 canvases near 8192x8192 over gRPC", ("catalog-generator",),
                 lambda: over_grpc("catalog-generator", "", 1, params={"sizes": canvases}, inputs={"cutout": cutout}))
            case("a 7000x7000 PNG canvas (within the 50 MP one job may write) over gRPC", ("catalog-generator",),
                 lambda: over_grpc("catalog-generator", "", 1, params={"sizes": [[7000, 7000]], "format": "png"},
                                   inputs={"cutout": cutout}))
            case("4 concurrent 4096x4096 PNG canvases over gRPC", ("catalog-generator",),
                 lambda: over_grpc("catalog-generator", "", 4, params={"sizes": [[4096, 4096]], "format": "png"},
                                   inputs={"cutout": cutout}))
    finally:
        for cage in cages.values():
            cage.remove()
    mode = f"cgroup v{next(iter(cages.values())).version}" if contained else "watchdog (no cgroup could be made)"
    return {"containment": mode, "cases": results}


# ---- kill -9 -------------------------------------------------------------------------------


def part_kill(args) -> dict:
    with Line("kill") as line:
        keys = upload_photos(line, 200)
        jobs = [line.job(keys[i % len(keys)]) for i in range(args.events)]
        ids = [j.job_id for j in jobs]
        health_samples = {s: [] for s in LINE}
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample_health, args=(line, health_samples, sampling), daemon=True)
        start = time.monotonic()
        feeder = threading.Thread(target=_feed, args=(line, jobs, args.in_flight), daemon=True)
        feeder.start()
        sampler.start()
        kills = []
        targets = ["segmenter", "classifier"]
        for i in range(args.kills):
            target = targets[i % 2]
            threshold = args.events * (i + 1) // (args.kills + 1)
            line.collector.wait(lambda: len(line.collector.done) >= threshold, args.events * 2)
            old = line.services.pid(target)
            t_kill = time.monotonic()
            line.services.kill(target)
            line.services.start(target)
            new = line.services.pid(target)
            line.services.wait_until_serving(timeout_s=180, services=[target])
            kills.append({"service": target, "at_done": len(line.collector.done), "t": round(t_kill - start, 2),
                          "old_pid": old, "new_pid": new, "serving_again_s": round(time.monotonic() - t_kill, 2), "_t": t_kill})
            print(f"kill -9 {target} at {kills[-1]['at_done']} done: serving again after {kills[-1]['serving_again_s']} s", flush=True)
        line.collector.wait(lambda: all(line.collector.outcome_time(j) for j in ids), args.events * 2)
        seconds = time.monotonic() - start
        sampling.set()
        sampler.join()
        with line.collector.changed:
            arrivals = sorted(t for j in ids for t, _ in line.collector.done.get(j, []))
            by_worker = {}
            for j in ids:
                for t, job in line.collector.done.get(j, []):
                    for timing in job.timings:
                        key = (timing.step, timing.worker.rsplit("-", 1)[-1])
                        by_worker[key] = min(by_worker.get(key, t), t)
        for kill in kills:
            t_kill = kill.pop("_t")
            first = by_worker.get((kill["service"], str(kill["new_pid"])))
            kill["first_done_by_new_process_s"] = round(first - t_kill, 2) if first else None
            window = [t for t in arrivals if t_kill - 10 <= t <= (first or t_kill) + 10]
            kill["longest_gap_between_done_s"] = round(max(np.diff(window)), 2) if len(window) > 1 else None
        tally = line.collector.tally(ids)
        timeline = [round(t - start, 2) for t in arrivals]
    recoveries = [k["first_done_by_new_process_s"] for k in kills if k["first_done_by_new_process_s"] is not None]
    return {"events": args.events, "chain": ["classifier", "segmenter"], "kills": kills, **tally,
            "seconds": round(seconds, 1), "images_per_s": round(tally["done"] / seconds, 2),
            "recovery_s_max": max(recoveries) if recoveries else None,
            "recovery_s_median": round(float(np.median(recoveries)), 2) if recoveries else None,
            "health_during_load": {s: latency(v) for s, v in health_samples.items()},
            "done_timeline_s": timeline}


def _feed(line: Line, jobs: list, in_flight: int) -> None:
    """Publishes the jobs keeping at most `in_flight` without an outcome: every service has work
    queued at all times, so each kill lands on jobs in its hands, whichever service it hits."""
    sent = 0
    outcomes = lambda: len(line.collector.done) + len(line.collector.letters)  # noqa: E731
    while sent < len(jobs):
        with line.collector.changed:
            line.collector.changed.wait_for(lambda: sent - outcomes() < in_flight, 1)
            room = in_flight - (sent - outcomes())
        for job in jobs[sent:sent + max(room, 0)]:
            line.send_job(job)
            sent += 1


def _sample_health(line: Line, samples: dict, stop: threading.Event) -> None:
    """Every 250 ms, each service's health while the line works (and while it restarts)."""
    import grpc

    while not stop.wait(0.25):
        for service in LINE:
            with grpc.insecure_channel(f"127.0.0.1:{line.services.port(service)}") as channel:
                ms = health_ms(channel, steps.spec(service).grpc_service, timeout_s=2)
            if ms is not None:
                samples[service].append(ms)


# ---- SIGTERM -------------------------------------------------------------------------------


def part_sigterm(args) -> dict:
    big = photos(data_set("C2_tryon_examples_hd"))[0].read_bytes()
    with Line("sigterm") as line:
        keys = upload_photos(line, 100)
        jobs = [line.job(keys[i % len(keys)]) for i in range(args.sigterm_events)]
        ids = [j.job_id for j in jobs]
        for job in jobs:
            line.send_job(job)
        stops = []
        for i, service in enumerate(LINE[::-1]):
            threshold = args.sigterm_events * (i + 1) // 3
            line.collector.wait(lambda: len(line.collector.done) >= threshold, args.sigterm_events * 3)
            port, done, calls = line.services.port(service), threading.Event(), []

            def caller() -> None:  # step calls back to back, before, during and after the SIGTERM
                while not done.is_set():
                    started = time.monotonic()
                    code = grpc_call(port, service, big, 120)[0]
                    calls.append((started, time.monotonic(), code))
                    if code != "OK":
                        time.sleep(0.2)  # a client's backoff

            callers = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
            for t in callers:
                t.start()
            time.sleep(1.5)  # calls in the step's hands, Kafka batches in flight
            start = time.monotonic()
            code = line.services.stop(service)
            exit_s = time.monotonic() - start
            done.set()
            for t in callers:
                t.join(timeout=150)
            line.services.start(service)
            line.services.wait_until_serving(timeout_s=180, services=[service])
            stops.append({"service": service, "at_done": threshold, "exit_code": code, "exit_s": round(exit_s, 2),
                          "grpc_calls_in_flight_at_sigterm": dict(Counter(c for t, e, c in calls if t < start < e)),
                          "grpc_calls_started_after": dict(Counter(c for t, _, c in calls if t >= start))})
            print(f"SIGTERM {service}: {stops[-1]}", flush=True)
        line.collector.wait(lambda: all(line.collector.outcome_time(j) for j in ids), args.sigterm_events * 3)
        tally = line.collector.tally(ids)
    return {"events": args.sigterm_events, "stops": stops, **tally}


# ---- health under load ---------------------------------------------------------------------


def part_health(args) -> dict:
    import grpc

    service = "segmenter"
    big = [p.read_bytes() for p in photos(data_set("C2_tryon_examples_hd"))[:4]]
    with Line("health", services=(service,)) as line:
        port = line.services.port(service)
        workers = line.settings.service.grpc_workers
        stop, in_flight, busy_samples, calls = threading.Event(), [0], [], []
        lock = threading.Lock()

        def client(i: int) -> None:
            while not stop.is_set():
                with lock:
                    in_flight[0] += 1
                code, _, seconds = grpc_call(port, service, big[i % len(big)], 120)
                with lock:
                    in_flight[0] -= 1
                    calls.append((code, seconds))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.health_clients)]
        for t in threads:
            t.start()
        time.sleep(3)  # every worker taken, a queue behind them
        probes, failed = [], 0
        end = time.monotonic() + args.health_s
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            while time.monotonic() < end:
                ms = health_ms(channel, steps.spec(service).grpc_service, timeout_s=5)
                if ms is None:
                    failed += 1
                else:
                    probes.append(ms)
                with lock:
                    busy_samples.append(in_flight[0])
                time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=180)
    step_codes = Counter(c for c, _ in calls)
    return {"service": service, "grpc_workers": workers, "concurrent_clients": args.health_clients,
            "step_calls": len(calls), "step_codes": dict(step_codes), "step_call_latency": latency([s * 1000 for _, s in calls]),
            "calls_in_flight_min": min(busy_samples), "seconds": args.health_s, "health": latency(probes),
            "health_failed": failed, "health_samples_ms": [round(p, 1) for p in probes]}


# ---- results -------------------------------------------------------------------------------


def plot(results: dict, path: Path) -> None:
    kill, health = results["parts"].get("kill"), results["parts"].get("health")
    if not kill and not health:
        return
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4))
    if kill:
        axes[0].plot(kill["done_timeline_s"], range(1, len(kill["done_timeline_s"]) + 1), lw=1)
        for k in kill["kills"]:
            axes[0].axvline(k["t"], color="red" if k["service"] == "segmenter" else "orange", lw=0.8)
        axes[0].set(title=f"kill -9 x{len(kill['kills'])}: done messages over time (red segmenter, orange classifier)",
                    xlabel="s", ylabel="done messages (duplicates included)")
    if health:
        samples = health["health_samples_ms"]
        axes[1].hist(samples, bins=50)
        axes[1].set(title=f"health Check under {health['concurrent_clients']} step calls: p99 {health['health']['p99_ms']} ms",
                    xlabel="ms", ylabel="checks", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=PARTS, help="run only these parts (repeatable; default all)")
    ap.add_argument("--events", type=int, default=1000, help="jobs in the kill part (default 1000)")
    ap.add_argument("--kills", type=int, default=5, help="SIGKILLs during them (default 5)")
    ap.add_argument("--in-flight", type=int, default=32, help="jobs without an outcome at most, in the kill part")
    ap.add_argument("--sigterm-events", type=int, default=200)
    ap.add_argument("--fuzz-n", type=int, default=20_000, help="random events of each kind (default 20,000)")
    ap.add_argument("--health-s", type=float, default=30)
    ap.add_argument("--health-clients", type=int, default=16)
    ap.add_argument("--case-timeout", type=float, default=120, help="seconds one case may take to settle")
    ap.add_argument("--no-pillow", dest="pillow", action="store_false", help="skip fetching Pillow's test corpus")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    # SIGTERM unwinds like an error, so services, broker and S3 endpoint stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    path = args.out / "chaos.json"
    results = json.loads(path.read_text()) if path.exists() else {"parts": {}}
    results["machine"] = machine()
    for part in args.part or PARTS:
        print(f"== {part} ==", flush=True)
        start = time.monotonic()
        figures = globals()[f"part_{part}"](args)
        figures.update(measured_at=now_iso(), part_seconds=round(time.monotonic() - start, 1), code=code_state())
        results["parts"][part] = figures
        write_json(path, results)
    plot(results, args.out / "chaos.png")
    return 0


def code_state() -> dict:
    """The code measured: the commit, and the files under shared/ and services/ changed since."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout  # noqa: E731
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": sorted(line[3:] for line in git("status", "--porcelain", "shared", "services").splitlines())}


if __name__ == "__main__":
    sys.exit(main())
