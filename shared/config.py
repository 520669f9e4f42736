"""One typed configuration, validated at start-up: defaults < YAML file < environment.

Environment variables use the prefix STUDIOLINE_ and `__` between levels, e.g.
STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS=localhost:9092 or STUDIOLINE_LIMITS__MAX_PIXELS=20000000.
STUDIOLINE_CONFIG names a YAML file with the same structure.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from studioline.shared.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = "studioline."
    group_prefix: str = "studioline-"
    # Topic creation (`studioline init`): partitions bound a step's useful replicas; -1 keeps
    # messages forever.
    partitions: int = Field(3, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)
    # Records handed to a step at once; a step may process them as one batch.
    max_batch: int = Field(8, ge=1, le=1024)
    poll_timeout_ms: int = Field(500, ge=10)
    # Bounds the time between polls: a batch must finish within it or the member is evicted.
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    request_timeout_ms: int = Field(30_000, ge=1000)
    # The largest record the line produces or reads: the producers' max_request_size, the
    # consumers' max_partition_fetch_bytes and the topics' max.message.bytes (`studioline init`).
    # Match the brokers' message.max.bytes (Kafka's default, 1 MiB); a job whose next event or
    # dead letter would exceed it keeps its bulk in S3 instead (worker.py).
    max_message_bytes: int = Field(1_048_576, ge=65_536)
    # Authentication and encryption; the credentials usually come from a Secret via the environment.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: str = ""

    def client_config(self) -> dict[str, Any]:
        """What every kafka-python client of the line is given: brokers and security."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config

    def topic(self, name: str) -> str:
        """Full topic name for "ingest", "done", "dlq" or "step.<service>"."""
        return f"{self.topic_prefix}{name}"

    def step_topic(self, service: str) -> str:
        return self.topic(f"step.{service}")


class IngestLimits(BaseModel):
    """What one new job may carry (checked on the ingest topic, before it starts): its event
    grows at every step, so it must start far below kafka.max_message_bytes."""

    # The whole new job event as protobuf (recipe, attributes, ids, caller-supplied artifacts).
    max_event_bytes: int = Field(256 * 1024, ge=1024)
    # The recipe as protobuf, every step's parameters included; one step's parameters.
    max_recipe_bytes: int = Field(64 * 1024, ge=256)
    max_step_params_bytes: int = Field(16 * 1024, ge=64)
    # Caller attributes: how many, and their keys and values together (UTF-8 bytes).
    max_attributes: int = Field(64, ge=0)
    max_attributes_bytes: int = Field(16 * 1024, ge=0)
    # job_id and tenant (the tenant starts every artifact key; S3 keys end at 1,024 bytes).
    max_id_chars: int = Field(256, ge=16)
    # Nesting of a JSON event and of parameter values.
    max_depth: int = Field(32, ge=4)


class S3Settings(BaseModel):
    endpoint: str = "localhost:9000"
    # No default credentials: they come from a Secret (or the embedded endpoint's own).
    access_key: str = ""
    secret_key: SecretStr = SecretStr("")
    # TLS to S3 unless turned off (the embedded loopback endpoint speaks plain HTTP).
    secure: bool = True
    region: str = "us-east-1"
    incoming_bucket: str = "incoming"
    artifacts_bucket: str = "artifacts"
    models_bucket: str = "models"
    # Model templates for the catalog generator's try-on: <id>/photo.jpg, person.png, region.png, template.json.
    templates_bucket: str = "templates"


class LimitSettings(BaseModel):
    """Checked before an image is decoded (imgproxy's defaults where it has one)."""

    max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(50_000_000, ge=1)
    max_side: int = Field(16_384, ge=16)
    # gRPC requests may carry image bytes inline up to this size; larger ones pass a MinIO reference.
    inline_max_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Memory budget (shared/memory.py): decoded images and the working copies a step makes of
    # them (its spec's memory_factor) must fit in memory_fraction of the container's memory
    # limit: cgroup v2 memory.max where set, else memory_limit_bytes (the chart's default limit).
    # The rest is headroom for the runtime and the models. Over it: ImageRejected over_budget;
    # requests that fit wait up to memory_wait_s for the budget others hold.
    memory_limit_bytes: int = Field(2 * 1024**3, ge=64 * 1024**2)
    memory_fraction: float = Field(0.5, gt=0, le=1)
    memory_wait_s: float = Field(30.0, ge=0)


class RetrySettings(BaseModel):
    max_attempts: int = Field(4, ge=1)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(10.0, ge=0)


class RoutingSettings(BaseModel):
    table: Path = PROJECT_ROOT / "shared" / "routing.yaml"
    confidence_threshold: float = Field(0.55, ge=0, le=1)
    fallback_chain: str = "fallback"


class ServiceSettings(BaseModel):
    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9100, ge=0, le=65535)
    # Loopback unless the deployment opens it (the chart does, behind a NetworkPolicy).
    metrics_address: str = "127.0.0.1"
    # Set to false to serve only gRPC (no Kafka consumer), e.g. for an interactive-only replica.
    kafka: bool = True
    grpc: bool = True
    grpc_workers: int = Field(4, ge=1)
    shutdown_grace_s: float = Field(20.0, ge=0)


class TlsSettings(BaseModel):
    """Server TLS for gRPC (PEM files, usually mounted from a Secret); a client CA turns on
    mutual TLS: callers must present a certificate it signed."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None


class GrpcClientSettings(BaseModel):
    """How `studioline` and other callers in this config reach a step: the CA that signed the
    servers' certificates, a client certificate for mutual TLS, and the tenant's token."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    token: SecretStr = SecretStr("")


class GrpcSettings(BaseModel):
    """Who may call a step over gRPC, and on which address."""

    # Plain text, and without a tokens file no authentication: only when asked for, for the
    # loopback demo and tests (bind 127.0.0.1 then). Otherwise the server needs TLS files.
    insecure: bool = False
    bind_address: str = "[::]"
    tls: TlsSettings = TlsSettings()
    # API tokens: a YAML list of {tenant, sha256 of the token, expires?} (a mounted Secret),
    # re-read when the file changes, so tokens rotate without a restart.
    tokens_file: Path | None = None
    tokens_reload_s: float = Field(5.0, gt=0)
    # Server reflection (grpcurl's service listing) is off unless asked for.
    reflection: bool = False
    # A plain-text port that serves grpc.health.v1 alone (0: none): the kubelet's gRPC probes
    # cannot speak TLS. It answers SERVING / NOT_SERVING and nothing else.
    health_port: int = Field(0, ge=0, le=65535)
    client: GrpcClientSettings = GrpcClientSettings()

    def check_serving(self) -> None:
        """A server starts secure unless told otherwise (checked when it starts, not by every
        command that reads the config)."""
        if self.insecure:
            return
        if not (self.tls.cert_file and self.tls.key_file):
            raise ConfigError(
                "gRPC needs TLS: set grpc.tls.cert_file and grpc.tls.key_file (STUDIOLINE_GRPC__TLS__CERT_FILE, "
                "..._KEY_FILE), or grpc.insecure=true for plain text on loopback"
            )
        if self.tokens_file is None:
            raise ConfigError("gRPC over TLS needs grpc.tokens_file: every call is authenticated by its tenant's token")


class TenantSettings(BaseModel):
    """What one tenant may touch."""

    # Where its sources may be read: "bucket" (all of it) or "bucket/prefix/".
    sources: list[str] = Field(default_factory=list, max_length=64)
    # Where its outputs are written (default: s3.artifacts_bucket), always under its own prefix.
    output_bucket: str = ""


class BatchingSettings(BaseModel):
    """The service's dynamic batcher (as Triton's): Kafka and gRPC work is gathered into one
    batch of up to max_batch_size images, waiting at most max_queue_delay_ms after the oldest
    queued image for more to arrive; interactive gRPC requests go ahead of bulk Kafka work."""

    max_batch_size: int = Field(8, ge=1, le=256)
    # 0 dispatches whatever is queued at once (Triton's default); on a GPU a few ms fill batches.
    max_queue_delay_ms: float = Field(2.0, ge=0, le=10_000)


class ModelSettings(BaseModel):
    dir: Path = PROJECT_ROOT / ".models"
    # onnxruntime threads per session; 0 lets onnxruntime decide.
    intra_op_threads: int = Field(2, ge=0)
    # "auto" uses CUDA when onnxruntime sees it, else the CPU; "tensorrt" puts onnxruntime's
    # TensorRT provider before CUDA (engines are built on first use of each batch shape).
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "tensorrt"):
            raise ValueError("device must be auto, cpu, cuda or tensorrt")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOLINE_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    ingest: IngestLimits = IngestLimits()
    s3: S3Settings = S3Settings()
    limits: LimitSettings = LimitSettings()
    retry: RetrySettings = RetrySettings()
    routing: RoutingSettings = RoutingSettings()
    service: ServiceSettings = ServiceSettings()
    batching: BatchingSettings = BatchingSettings()
    models: ModelSettings = ModelSettings()
    grpc: GrpcSettings = GrpcSettings()
    # Tenants by name; empty: one tenant, `tenant`, that reads the incoming bucket.
    tenants: dict[str, TenantSettings] = Field(default_factory=dict, max_length=10_000)
    tenant: str = "default"
    log_level: str = "INFO"
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls), file_secret_settings)


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by STUDIOLINE_CONFIG, if any."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("STUDIOLINE_CONFIG")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"STUDIOLINE_CONFIG={path}: {exc.strerror}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"STUDIOLINE_CONFIG={path}: expected a mapping at the top level")
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ConfigError:
        raise
    except Exception as exc:  # pydantic's ValidationError lists every bad field
        raise ConfigError(f"invalid configuration:\n{exc}") from exc
