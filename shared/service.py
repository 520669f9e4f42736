"""Starting a service: one command, the same plumbing for every step.

Order: configuration validated -> metrics and gRPC up with health NOT_SERVING -> model loaded
and warmed -> SERVING and the Kafka loop running. SIGTERM: health NOT_SERVING, the Kafka loop
finishes its batch and commits, gRPC drains in-flight calls, the model is closed, exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from studioline.shared import steps
from studioline.shared.config import get_settings
from studioline.shared.logs import configure_logging
from studioline.shared.metrics import READY, start_metrics_server
from studioline.shared.models.store import ModelStore
from studioline.shared.routing import Router
from studioline.shared.runtime import StepRunner
from studioline.shared.servicer import StepServicer
from studioline.shared.storage import Storage
from studioline.shared.worker import KafkaWorker

log = logging.getLogger(__name__)


def build_grpc_server(runner: StepRunner, settings, storage, router, port: int):
    """The gRPC server for one step, with health (NOT_SERVING until told) and reflection.
    Returns (server, health servicer, bound port)."""
    spec = runner.step.spec
    limit = settings.limits.inline_max_bytes * 2 + (1 << 20)  # an image plus its mask, inline
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.service.grpc_workers),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    server.add_generic_rpc_handlers((StepServicer(runner, settings, storage, router).handler(),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", spec.grpc_service):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection((spec.grpc_service, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"[::]:{port}")
    return server, health_servicer, bound


def set_serving(health_servicer, spec, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", spec.grpc_service):
        health_servicer.set(name, status)


def serve(service: str) -> None:
    try:
        spec = steps.spec(service)
    except KeyError as exc:
        raise SystemExit(exc.args[0]) from None
    settings = get_settings()
    configure_logging(service, settings.log_level, settings.log_json)
    storage = Storage(settings.s3)
    router = Router.from_settings(settings) if spec.routes else None
    store = ModelStore(settings.models.dir, storage, settings.s3.models_bucket)
    step = spec.step_class()(settings, store)
    runner = StepRunner(step)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    start_metrics_server(settings.service.metrics_port)
    server = health_servicer = None
    if settings.service.grpc:
        server, health_servicer, port = build_grpc_server(runner, settings, storage, router, settings.service.grpc_port)
        server.start()
        log.info("gRPC listening, NOT_SERVING until warm", extra={"port": port})

    step.load()
    step.warmup()
    READY.labels(service).set(1)
    if health_servicer is not None:
        set_serving(health_servicer, spec, True)
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
    if health_servicer is not None:
        set_serving(health_servicer, spec, False)
    if worker_thread is not None:
        worker_thread.join()
    if server is not None:
        server.stop(settings.service.shutdown_grace_s).wait()
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
