"""Health is answered while every step thread is busy: probes never queue behind image work."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from studioline.services.inpainter.step import InpainterStep
from studioline.shared.client import step_call
from studioline.shared.config import Settings
from studioline.shared.grpc_server import GrpcServer
from studioline.shared.runtime import StepRunner
from studioline.v1 import steps_pb2

pytestmark = pytest.mark.integration


class HeldInpainter(InpainterStep):
    """The real inpainter, held at the start of each batch until the test lets it go."""

    def __init__(self, settings, release: threading.Event):
        super().__init__(settings, None)
        self.release = release

    def run_batch(self, items):
        self.release.wait(30)
        return super().run_batch(items)


def test_health_answers_while_every_step_thread_is_busy():
    settings = Settings(service={"grpc_workers": 2}, batching={"max_batch_size": 1}, grpc={"insecure": True, "bind_address": "127.0.0.1"})
    release = threading.Event()
    server = GrpcServer(StepRunner(HeldInpainter(settings, release)), settings, None, None, 0)
    server.start()
    server.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(buf, format="PNG")
    call = step_call(channel, "inpainter")
    try:
        busy = [call.future(steps_pb2.StepRequest(image=steps_pb2.ImageInput(data=buf.getvalue()))) for _ in range(6)]
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(10):  # the kubelet's probe gives up after its timeout (1 s by default)
            reply = health.Check(health_pb2.HealthCheckRequest(service="studioline.v1.Inpainter"), timeout=1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert not any(f.done() for f in busy)  # the step threads really were all held
        release.set()
        assert all(len(f.result(timeout=30).outputs) == 1 for f in busy)
    finally:
        release.set()
        channel.close()
        server.stop(0)
