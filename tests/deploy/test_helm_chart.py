"""The Helm chart, rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK: no helm
binary, no cluster) for the default values and a production-like values file, then checked on
the parsed objects. What needs a cluster (scheduling, probes answering, KEDA, the hook Job
running) is not exercised here."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from studioline.shared import steps
from studioline.shared.config import Settings
from studioline.shared.models.registry import registered_models
from studioline.shared.routing import Router

try:
    import helm_python as helm
except ImportError as exc:  # the `deploy` extra is not installed
    pytest.skip(f"helm-python-sdk is not installed ({exc}); pip install -e '.[deploy]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "studioline"
PROD_VALUES = yaml.safe_load((Path(__file__).parent / "values-prod.yaml").read_text())
RELEASE, NAMESPACE = "sl", "studioline"
GPU_SERVICES = {"segmenter", "matting"}
SERVICES = steps.names()
SECRET_ENV = {"STUDIOLINE_S3__ACCESS_KEY", "STUDIOLINE_S3__SECRET_KEY"}
REQUIRED_ENV = {
    "STUDIOLINE_CONFIG", "STUDIOLINE_ROUTING__TABLE", "STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS",
    "STUDIOLINE_KAFKA__TOPIC_PREFIX", "STUDIOLINE_KAFKA__GROUP_PREFIX", "STUDIOLINE_KAFKA__MAX_MESSAGE_BYTES",
    "STUDIOLINE_S3__ENDPOINT",
    "STUDIOLINE_S3__SECURE", "STUDIOLINE_SERVICE__GRPC_PORT", "STUDIOLINE_SERVICE__METRICS_PORT",
    "STUDIOLINE_SERVICE__SHUTDOWN_GRACE_S", "STUDIOLINE_MODELS__DIR", "STUDIOLINE_MODELS__DEVICE", *SECRET_ENV,
}


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(CHART)


def render(chart, values=None) -> dict:
    """{(kind, name): object} plus the ConfigMap's files, from Helm's render of the chart."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objects, f"{key} rendered twice"
                objects[key] = doc
    return objects


@pytest.fixture(scope="module")
def default_objects(chart):
    return render(chart)


@pytest.fixture(scope="module")
def prod_objects(chart):
    return render(chart, PROD_VALUES)


def name(service: str) -> str:
    return f"{RELEASE}-studioline-{service}"


def container(objects, service):
    return objects[("Deployment", name(service))]["spec"]["template"]["spec"]["containers"][0]


def env_of(c) -> dict:
    return {e["name"]: e for e in c["env"]}


def kinds(objects, kind) -> set[str]:
    return {n for k, n in objects if k == kind}


@pytest.mark.parametrize("values", [None, PROD_VALUES], ids=["default", "prod"])
def test_lint_passes(values):
    report = helm.lint(CHART, values, strict=False, kube_version="v1.30.0")
    errors = [m for m in report["messages"] if m["severity"] >= 3]
    assert not report["errors"] and not errors, report


def test_values_pass_schema_and_match_the_routing_table(chart):
    chart.validate_schema(PROD_VALUES)
    # The chart carries a copy of the routing table: it must not drift from the one in the code.
    assert chart.values["routing"] == yaml.safe_load((ROOT / "shared" / "routing.yaml").read_text())
    # The values cannot import the step table: they must name exactly its steps, the routing step
    # alone consuming the ingest topic, and only models its spec may load.
    assert set(chart.values["services"]) == set(SERVICES)
    for service, values in chart.values["services"].items():
        spec = steps.spec(service)
        assert (values.get("extraTopics") == ["ingest"]) == spec.routes, service
        assert set(values.get("models", [])) <= set(spec.models), service
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["definitions"]["service"]["properties"]["models"]["items"]["enum"]) == set(registered_models())


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"services": {"segmenter": {"replicas": "two"}}}, "/services/segmenter/replicas"),
        ({"services": {"matting": {"gpu": {"enabled": True, "count": 0}}}}, "/services/matting/gpu/count"),
        ({"services": {"cropper": {"replica": 2}}}, "replica"),
        ({"kafka": {"partitions": 0}}, "/kafka/partitions"),
        ({"services": {"cropper": {"models": ["no-such-pack"]}}}, "/services/cropper/models/0"),
    ],
)
def test_schema_rejects_bad_values_with_the_key(chart, bad, where):
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)
    assert where in str(err.value), str(err.value)


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects"])
def test_every_service_has_its_objects(request, objs):
    objects = request.getfixturevalue(objs)
    for service in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert (kind, name(service)) in objects, f"{service}: no {kind}"
        # Exactly one autoscaler per step: the chart's HPA, or KEDA's (which creates its own HPA).
        has_hpa = ("HorizontalPodAutoscaler", name(service)) in objects
        has_keda = ("ScaledObject", name(service)) in objects
        assert has_hpa != has_keda, f"{service}: HPA={has_hpa} ScaledObject={has_keda}"
    assert ("ConfigMap", f"{RELEASE}-studioline-config") in objects
    assert ("Job", f"{RELEASE}-studioline-init") in objects


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects"])
def test_deployments_probes_resources_security(request, objs):
    objects = request.getfixturevalue(objs)
    for service in SERVICES:
        pod = objects[("Deployment", name(service))]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["args"] == ["serve", service]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert set(ports) == {"grpc", "metrics"}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # Kubernetes' native gRPC probe: grpc.health.v1 on the step's gRPC port.
            assert c[probe]["grpc"]["port"] == ports["grpc"], (service, probe)
            assert "httpGet" not in c[probe] and "exec" not in c[probe]
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "startup too short for model loading"
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][section]), (service, section)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        grace = int(env_of(c)["STUDIOLINE_SERVICE__SHUTDOWN_GRACE_S"]["value"])
        assert pod["terminationGracePeriodSeconds"] > grace, "SIGKILL would cut the batch commit short"
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "emptyDir" in volumes[mounts[env_of(c)["STUDIOLINE_MODELS__DIR"]["value"]]]
        assert "configMap" in volumes[mounts["/etc/studioline"]]
        annotations = objects[("Deployment", name(service))]["spec"]["template"]["metadata"]["annotations"]
        assert len(annotations["checksum/config"]) == 64
        svc = objects[("Service", name(service))]["spec"]
        assert {p["name"]: p["port"] for p in svc["ports"]} == ports


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects"])
def test_env_is_what_the_config_accepts(request, objs, tmp_path, monkeypatch):
    """Each pod's environment and mounted files load into the real Settings and routing table."""
    objects = request.getfixturevalue(objs)
    files = objects[("ConfigMap", f"{RELEASE}-studioline-config")]["data"]
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
    for service in SERVICES:
        env = env_of(container(objects, service))
        assert REQUIRED_ENV <= set(env), f"{service}: missing {sorted(REQUIRED_ENV - set(env))}"
        for key in SECRET_ENV:
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"], (service, key)
        plain = {k: e["value"] for k, e in env.items() if "value" in e}
        plain["STUDIOLINE_CONFIG"] = str(tmp_path / "config.yaml")
        plain["STUDIOLINE_ROUTING__TABLE"] = str(tmp_path / "routing.yaml")
        for k, v in plain.items():
            monkeypatch.setenv(k, v)
        settings = Settings()
        assert settings.kafka.bootstrap_servers == plain["STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS"]
        assert settings.service.grpc_port == int(plain["STUDIOLINE_SERVICE__GRPC_PORT"])
        expected_topics = {"default_objects": (1, 604800000), "prod_objects": (3, 259200000)}[objs]
        assert (settings.kafka.replication_factor, settings.kafka.retention_ms) == expected_topics
        if objs == "prod_objects":  # SASL credentials come from the named Secret, never as values
            assert settings.kafka.security_protocol == "SASL_SSL"
            for key in ("STUDIOLINE_KAFKA__SASL_USERNAME", "STUDIOLINE_KAFKA__SASL_PASSWORD"):
                assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "studioline-kafka-user"
        else:
            assert "STUDIOLINE_KAFKA__SASL_PASSWORD" not in env
        Router.from_settings(settings)  # raises on an invalid table


def test_gpu_only_where_asked(default_objects, prod_objects):
    for objects, gpu_services in ((default_objects, set()), (prod_objects, GPU_SERVICES)):
        for service in SERVICES:
            pod = objects[("Deployment", name(service))]["spec"]["template"]["spec"]
            c = pod["containers"][0]
            gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
            device = env_of(c)["STUDIOLINE_MODELS__DEVICE"]["value"]
            if service in gpu_services:
                assert gpus == 1 and device == "cuda"
                assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
                assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
                assert c["image"].endswith("-gpu")
            else:
                assert gpus is None and device == "cpu", service
                assert "nodeSelector" not in pod and "tolerations" not in pod, service
                assert not c["image"].endswith("-gpu")


def test_keda_and_servicemonitor_only_when_enabled(default_objects, prod_objects):
    assert not kinds(default_objects, "ScaledObject") and not kinds(default_objects, "ServiceMonitor")
    assert kinds(default_objects, "HorizontalPodAutoscaler") == {name(s) for s in SERVICES}
    # values-prod turns KEDA on in defaults and off again for catalog-generator (false overrides true).
    keda = set(SERVICES) - {"catalog-generator"}
    assert kinds(prod_objects, "ScaledObject") == {name(s) for s in keda}
    assert kinds(prod_objects, "HorizontalPodAutoscaler") == {name("catalog-generator")}
    assert kinds(prod_objects, "ServiceMonitor") == {name(s) for s in SERVICES}
    for service in keda:
        spec = prod_objects[("ScaledObject", name(service))]["spec"]
        assert spec["scaleTargetRef"]["name"] == name(service)
        lag = [t["metadata"] for t in spec["triggers"] if t["type"] == "kafka"]
        assert {m["consumerGroup"] for m in lag} == {f"studioline-{service}"}
        expected = {f"studioline.step.{service}"} | ({"studioline.ingest"} if steps.spec(service).routes else set())
        assert {m["topic"] for m in lag} == expected
        assert all(m["bootstrapServers"] == PROD_VALUES["kafka"]["bootstrapServers"] for m in lag)
    for service in SERVICES:
        sm = prod_objects[("ServiceMonitor", name(service))]
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"
        assert sm["spec"]["selector"]["matchLabels"] == (
            prod_objects[("Deployment", name(service))]["spec"]["selector"]["matchLabels"]
        )
        assert "replicas" not in prod_objects[("Deployment", name(service))]["spec"], "autoscaler owns replicas"


def test_config_checksum_rolls_pods(chart, default_objects):
    values = {"routing": copy.deepcopy(chart.values["routing"])}
    values["routing"]["chains"]["other"][0]["params"]["aspects"] = ["1:1"]
    changed = render(chart, values)

    def checksum(objects):
        return objects[("Deployment", name("cropper"))]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(changed) != checksum(default_objects)


def test_init_job_is_a_hook_that_creates_topics_buckets_and_pushes_models(prod_objects):
    job = prod_objects[("Job", f"{RELEASE}-studioline-init")]
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"post-install", "post-upgrade"}
    pod = job["spec"]["template"]["spec"]
    assert [c["args"] for c in pod["initContainers"]] == [["init"]]
    assert [c["args"] for c in pod["containers"]] == [["models", "push"]]
    for c in pod["initContainers"] + pod["containers"]:
        env = env_of(c)
        assert SECRET_ENV <= set(env)
        assert env["STUDIOLINE_KAFKA__PARTITIONS"]["value"] == "12"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
