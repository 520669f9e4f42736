"""A step's gRPC server: the step's calls run on a thread pool, health and reflection answer on
the server's own event loop, so a probe is answered at once however busy the pool is.

grpc.aio runs the step's (synchronous) handler in `migration_thread_pool` and the asyncio
health and reflection servicers on its loop, which runs in a thread of its own here.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from studioline.shared.auth import AuthInterceptor, TokenStore
from studioline.shared.errors import ConfigError
from studioline.shared.runtime import StepRunner
from studioline.shared.servicer import StepServicer, message_limit


def server_credentials(tls) -> grpc.ServerCredentials:
    """TLS from the PEM files; with a client CA, clients must present a certificate it signed."""
    try:
        key, cert = tls.key_file.read_bytes(), tls.cert_file.read_bytes()
        client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"gRPC TLS: {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)


class GrpcServer:
    def __init__(self, runner: StepRunner, settings, storage, router, port: int):
        """Binds the step's service, health (NOT_SERVING until told) and, where enabled,
        reflection on `port` (0: any free port, see `.port`) of grpc.bind_address: TLS with
        tokens unless grpc.insecure says otherwise. Call start()."""
        settings.grpc.check_serving()
        self.spec = runner.step.spec
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._thread.start()
        servicer = StepServicer(runner, settings, storage, router)
        self.port = self._run(self._build(servicer, settings, port))

    async def _build(self, servicer: StepServicer, settings, port: int) -> int:
        limit = message_limit(settings.limits)
        g = settings.grpc
        store = TokenStore(g.tokens_file, g.tokens_reload_s) if g.tokens_file else None
        self._server = grpc.aio.server(
            migration_thread_pool=futures.ThreadPoolExecutor(
                max_workers=settings.service.grpc_workers, thread_name_prefix="grpc-step"
            ),
            interceptors=[AuthInterceptor(store, settings.tenant)],
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self._server.add_generic_rpc_handlers((servicer.handler(),))
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
        if g.reflection:
            reflection.enable_server_reflection(
                (self.spec.grpc_service, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
            )
        self._probe_server = None
        if g.health_port:
            self._probe_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._probe_server)
            self.health_port = self._probe_server.add_insecure_port(f"{g.bind_address}:{g.health_port}")
        address = f"{g.bind_address}:{port}"
        if g.insecure:
            return self._server.add_insecure_port(address)
        return self._server.add_secure_port(address, server_credentials(g.tls))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _set(self, status) -> None:
        for name in ("", self.spec.grpc_service):
            await self._health.set(name, status)

    def start(self) -> None:
        self._run(self._server.start())
        if self._probe_server is not None:
            self._run(self._probe_server.start())

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self._run(self._set(status))

    def stop(self, grace_s: float | None) -> None:
        """Stops taking calls, lets in-flight ones finish within `grace_s`, ends the loop."""
        self._run(self._server.stop(grace_s))
        if self._probe_server is not None:
            self._run(self._probe_server.stop(0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
