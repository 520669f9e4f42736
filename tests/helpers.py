"""Helpers the integration and end-to-end tests share."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from studioline.shared.config import KafkaSettings, RetrySettings, S3Settings, Settings
from studioline.shared.embedded import EmbeddedS3


def line_settings(kafka: str, s3: str, prefix: str, **overrides) -> Settings:
    """Settings for a fresh set of topics and groups on the embedded broker and S3."""
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka,
            topic_prefix=prefix,
            group_prefix=prefix,
            partitions=2,
            max_batch=4,
            # Tansu's joins take about half the session timeout.
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
            max_poll_interval_ms=60_000,
        ),
        s3=S3Settings(
            endpoint=s3,
            access_key=EmbeddedS3.access_key,
            secret_key=EmbeddedS3.secret_key, secure=False,
            incoming_bucket=f"{prefix}incoming".replace(".", "-"),
            artifacts_bucket=f"{prefix}artifacts".replace(".", "-"),
            models_bucket=f"{prefix}models".replace(".", "-"),
        ),
        retry=RetrySettings(max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2),
        **overrides,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for services run as processes."""
    k, s = settings.kafka, settings.s3
    return {
        "STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "STUDIOLINE_KAFKA__TOPIC_PREFIX": k.topic_prefix,
        "STUDIOLINE_KAFKA__GROUP_PREFIX": k.group_prefix,
        "STUDIOLINE_KAFKA__PARTITIONS": str(k.partitions),
        "STUDIOLINE_KAFKA__MAX_BATCH": str(k.max_batch),
        "STUDIOLINE_KAFKA__SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "STUDIOLINE_KAFKA__HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms),
        "STUDIOLINE_KAFKA__MAX_POLL_INTERVAL_MS": str(k.max_poll_interval_ms),
        "STUDIOLINE_S3__ENDPOINT": s.endpoint,
        "STUDIOLINE_S3__ACCESS_KEY": s.access_key,
        "STUDIOLINE_S3__SECRET_KEY": s.secret_key.get_secret_value(),
        "STUDIOLINE_S3__SECURE": str(s.secure).lower(),
        "STUDIOLINE_S3__INCOMING_BUCKET": s.incoming_bucket,
        "STUDIOLINE_S3__ARTIFACTS_BUCKET": s.artifacts_bucket,
        "STUDIOLINE_S3__MODELS_BUCKET": s.models_bucket,
        "STUDIOLINE_RETRY__MAX_ATTEMPTS": str(settings.retry.max_attempts),
        "STUDIOLINE_RETRY__BACKOFF_INITIAL_S": str(settings.retry.backoff_initial_s),
        "STUDIOLINE_LOG_JSON": "true",
        # Services on loopback: plain-text gRPC, said so explicitly, bound to 127.0.0.1.
        "STUDIOLINE_GRPC__INSECURE": "true",
        "STUDIOLINE_GRPC__BIND_ADDRESS": "127.0.0.1",
    }


def truncated_jpeg(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 3]


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def read_topic(settings: Settings, topic: str, idle_s: float = 3.0) -> list[bytes]:
    """Every message on `topic` so far, read by a fresh consumer group."""
    import time
    import uuid

    from kafka import KafkaConsumer

    k = settings.kafka
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=k.bootstrap_servers,
        group_id=f"{k.group_prefix}reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
    )
    values: list[bytes] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s or not consumer.assignment():
            for records in consumer.poll(timeout_ms=300).values():
                values.extend(r.value for r in records)
                last = time.monotonic()
    finally:
        consumer.close(autocommit=False)
    return values
