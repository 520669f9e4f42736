"""Starting a service: one command, the same plumbing for every step.

Order: configuration validated -> metrics and gRPC up with health NOT_SERVING -> model loaded
and warmed -> SERVING and the Kafka loop running. SIGTERM: health NOT_SERVING, the Kafka loop
finishes its batch and commits, gRPC drains in-flight calls, the model is closed, exit.
"""

from __future__ import annotations

import logging
import signal
import threading

from studioline.shared import steps
from studioline.shared.config import get_settings
from studioline.shared.logs import configure_logging
from studioline.shared.metrics import READY, start_metrics_server
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared.grpc_server import GrpcServer
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker

log = logging.getLogger(__name__)


def serve(service: str) -> None:
    try:
        spec = steps.spec(service)
    except KeyError as exc:
        raise SystemExit(exc.args[0]) from None
    settings = get_settings()
    configure_logging(service, settings.log_level, settings.log_json)
    # The Kafka loop needs S3; a gRPC-only replica without credentials takes inline images only.
    storage = Storage(settings.s3) if settings.service.kafka or settings.s3.access_key else None
    router = Router.from_settings(settings) if spec.routes else None
    store = ModelStore(settings.models.dir, storage, settings.s3.models_bucket)
    step = spec.step_class()(settings, store)
    runner = StepRunner(step)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    start_metrics_server(settings.service.metrics_port, settings.service.metrics_address)
    server = None
    if settings.service.grpc:
        server = GrpcServer(runner, settings, storage, router, settings.service.grpc_port)
        server.start()
        log.info("gRPC listening, NOT_SERVING until warm", extra={"port": server.port})

    step.load()
    step.warmup()
    READY.labels(service).set(1)
    if server is not None:
        server.set_serving(True)
    log.info("ready", extra={"step": service})

    worker_thread = None
    crashed = threading.Event()
    if settings.service.kafka:
        worker = KafkaWorker(runner, settings, storage, router)
        worker_thread = threading.Thread(
            target=_run_worker, args=(worker, stop, crashed), name="kafka-worker", daemon=True
        )
        worker_thread.start()

    stop.wait()
    log.info("stopping: draining in-flight work")
    READY.labels(service).set(0)
    if server is not None:
        server.set_serving(False)
    if worker_thread is not None:
        worker_thread.join()
    if server is not None:
        server.stop(settings.service.shutdown_grace_s)
    runner.close()
    step.close()
    log.info("stopped")
    if crashed.is_set():
        raise SystemExit(1)


def _run_worker(worker: KafkaWorker, stop: threading.Event, crashed: threading.Event) -> None:
    try:
        worker.run(stop)
    except Exception:
        log.exception("Kafka loop crashed; stopping the service so it is restarted")
        crashed.set()
        stop.set()
