"""Runs services as separate processes, the way the demo and the end-to-end tests need them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from studioline.shared import steps
from studioline.shared.embedded import free_port


class ServiceProcesses:
    """Services as separate processes, each with its own ports and log file."""

    def __init__(self, env: dict[str, str], log_dir: Path, services: tuple[str, ...] | None = None):
        self.env = env
        self.log_dir = log_dir
        self.services = services or steps.names()
        self.procs: dict[str, tuple[subprocess.Popen, int]] = {}  # service -> (process, gRPC port)
        self.metrics_ports: dict[str, int] = {}

    def __enter__(self) -> "ServiceProcesses":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            self.start(service)
        return self

    def start(self, service: str) -> None:
        grpc_port, metrics_port = free_port(), free_port()
        env = dict(os.environ, **self.env)
        env.update(
            STUDIOLINE_SERVICE__GRPC_PORT=str(grpc_port),
            STUDIOLINE_SERVICE__METRICS_PORT=str(metrics_port),
        )
        with open(self.log_dir / f"{service}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "studioline.shared.cli", "serve", service],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.procs[service] = (proc, grpc_port)
        self.metrics_ports[service] = metrics_port

    def stop(self, service: str, timeout_s: float = 60) -> int:
        """SIGTERM, as Kubernetes sends it: the service drains, commits and exits."""
        proc, _ = self.procs[service]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout_s)

    def kill(self, service: str) -> None:
        """SIGKILL: no draining, no commit; what a crash or an evicted pod looks like."""
        proc, _ = self.procs[service]
        proc.kill()
        proc.wait()

    def __exit__(self, *exc) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def wait_until_serving(self, timeout_s: float, services=None) -> None:
        """Blocks until each service's health check answers SERVING; fails if one exits."""
        deadline = time.monotonic() + timeout_s
        waiting = {s: self.procs[s] for s in (services or self.procs)}
        while waiting:
            for service, (proc, port) in list(waiting.items()):
                if proc.poll() is not None:
                    raise RuntimeError(f"{service} exited with code {proc.returncode}; see {self.log_dir / (service + '.log')}")
                if serving(port):
                    del waiting[service]
            if time.monotonic() > deadline:
                raise RuntimeError(f"services not serving after {timeout_s:.0f} s: {', '.join(waiting)}")
            time.sleep(0.5)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
