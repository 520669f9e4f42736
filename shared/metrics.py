"""Prometheus metrics, served on an HTTP port by every service."""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

STEP_SECONDS = Histogram(
    "studioline_step_seconds", "Compute time of a step per image", ["step", "source"], buckets=_LATENCY_BUCKETS
)
HOP_SECONDS = Histogram(
    "studioline_hop_seconds", "Time from the previous publish to this step's start", ["step"], buckets=_LATENCY_BUCKETS
)
IMAGES = Counter("studioline_images_total", "Images handled, by outcome", ["step", "source", "outcome"])
DEAD_LETTERS = Counter("studioline_dead_letters_total", "Messages sent to the dead-letter topic", ["step", "code"])
RETRIES = Counter("studioline_retries_total", "Transient failures retried", ["step"])
BATCH_SIZE = Histogram("studioline_batch_size", "Images per step batch", ["step"], buckets=(1, 2, 4, 8, 16, 32, 64))
QUEUE_SECONDS = Histogram(
    "studioline_batch_queue_seconds", "Time an image waited in the dynamic batcher", ["step", "source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
READY = Gauge("studioline_ready", "1 when the model is loaded and warm", ["step"])


def start_metrics_server(port: int, address: str) -> None:
    if port:
        start_http_server(port, addr=address)
