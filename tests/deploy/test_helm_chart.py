"""The Helm chart, rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK: no helm
binary, no cluster) for the default values and a production-like values file, then checked on
the parsed objects. What needs a cluster (scheduling, probes answering, KEDA, the hook Job
running, a CNI enforcing the NetworkPolicies) is not exercised here."""

from __future__ import annotations

import copy
import datetime
import json
import os
from pathlib import Path

import pytest
import yaml

from studioline.shared import steps
from studioline.shared.auth import TokenStore, token_digest
from studioline.shared.client import all_topics
from studioline.shared.config import Settings
from studioline.shared.grpc_server import server_credentials
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
TLS_ENV = {"STUDIOLINE_GRPC__TLS__CERT_FILE", "STUDIOLINE_GRPC__TLS__KEY_FILE", "STUDIOLINE_GRPC__TOKENS_FILE",
           "STUDIOLINE_GRPC__HEALTH_PORT"}
INSECURE_VALUES = {"grpc": {"insecure": True}}
TOKEN = "a-token-of-tenant-acme"
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


@pytest.fixture(scope="module")
def insecure_objects(chart):
    return render(chart, INSECURE_VALUES)


@pytest.fixture(scope="module")
def secret_data() -> dict[str, dict[str, str]]:
    """What the operator puts in the Secrets the chart names: a CA, a server certificate it
    signed for the steps' Service names, and a tokens file (generated with `cryptography`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(key, cn, issuer_key, issuer_name, ca, sans=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem(c):
        return c.public_bytes(serialization.Encoding.PEM).decode()

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "studioline test CA")])
    ca = cert(ca_key, "studioline test CA", ca_key, ca_name, ca=True)
    server = cert(server_key, name("classifier"), ca_key, ca_name, ca=False,
                  sans=[f"*.{NAMESPACE}.svc", f"*.{NAMESPACE}.svc.cluster.local"])
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    tokens = yaml.safe_dump([{"tenant": "acme", "sha256": token_digest(TOKEN)}])
    return {
        "studioline-grpc-tls": {"tls.crt": pem(server), "tls.key": key_pem, "ca.crt": pem(ca)},
        "studioline-grpc-tokens": {"tokens.yaml": tokens},
    }


def name(service: str) -> str:
    return f"{RELEASE}-studioline-{service}"


def container(objects, service):
    return objects[("Deployment", name(service))]["spec"]["template"]["spec"]["containers"][0]


def env_of(c) -> dict:
    return {e["name"]: e for e in c["env"]}


def kinds(objects, kind) -> set[str]:
    return {n for k, n in objects if k == kind}


def secret_mounts(pod) -> dict[str, dict]:
    """{mountPath: the Secret volume} for the pod's first container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return {
        m["mountPath"]: volumes[m["name"]]["secret"]
        for m in pod["containers"][0].get("volumeMounts", [])
        if "secret" in volumes[m["name"]]
    }


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes' LabelSelector semantics (matchLabels and In / NotIn / Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        op, value = e["operator"], labels.get(e["key"])
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]):
            return False
        if op == "Exists" and e["key"] not in labels:
            return False
    return True


def pod_labels(objects, service) -> dict:
    return objects[("Deployment", name(service))]["spec"]["template"]["metadata"]["labels"]


def load_pod_settings(objects, pod, tmp_path, monkeypatch, secret_data, extra_env=None) -> Settings:
    """The real Settings from one container's environment and the files it mounts: the
    ConfigMap's, and the Secrets' items written where the env points (the test's temp files)."""
    for key in [k for k in os.environ if k.startswith("STUDIOLINE_")]:
        monkeypatch.delenv(key)
    files = objects[("ConfigMap", f"{RELEASE}-studioline-config")]["data"]
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
    moved = {"/etc/studioline": tmp_path}
    for i, (path, secret) in enumerate(sorted(secret_mounts(pod).items())):
        folder = tmp_path / f"secret-{i}"
        folder.mkdir(exist_ok=True)
        for item in secret["items"]:
            (folder / item["path"]).write_text(secret_data[secret["secretName"]][item["key"]])
        moved[path] = folder
    for e in pod["containers"][0]["env"]:
        if "value" not in e:
            continue
        value = e["value"]
        for path, folder in moved.items():
            if value.startswith(path + "/"):
                value = str(folder / value[len(path) + 1:])
        monkeypatch.setenv(e["name"], value)
    for k, v in (extra_env or {}).items():
        monkeypatch.setenv(k, v)
    return Settings()


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
        ({"grpc": {"tls": {"existingSecret": ""}}}, "/grpc/tls/existingSecret"),
        ({"grpc": {"tokens": {"existingSecret": ""}}}, "/grpc/tokens/existingSecret"),
        # A prefix without its closing slash would also admit "shop-ab/...".
        ({"tenants": {"shop-a": {"sources": ["incoming/shop-a"]}}}, "/tenants/shop-a/sources/0"),
        ({"networkPolicy": {"kafkaPorts": [0]}}, "/networkPolicy/kafkaPorts/0"),
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


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects", "insecure_objects"])
def test_deployments_probes_resources_security(request, objs):
    objects = request.getfixturevalue(objs)
    insecure = objs == "insecure_objects"
    for service in SERVICES:
        pod = objects[("Deployment", name(service))]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["args"] == ["serve", service]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert set(ports) == ({"grpc", "metrics"} if insecure else {"grpc", "metrics", "health"})
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # Kubernetes' native gRPC probe (grpc.health.v1), which cannot speak TLS: on the
            # plain-text health port, or on the gRPC port itself when that is plain text.
            assert c[probe]["grpc"]["port"] == ports["grpc" if insecure else "health"], (service, probe)
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
        # The Service exposes gRPC and metrics; the health port is the kubelet's alone.
        svc = objects[("Service", name(service))]["spec"]
        assert {p["name"]: p["port"] for p in svc["ports"]} == {"grpc": ports["grpc"], "metrics": ports["metrics"]}


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects", "insecure_objects"])
def test_env_is_what_the_config_accepts(request, objs, tmp_path, monkeypatch, secret_data):
    """Each pod's environment and mounted files load into the real Settings and routing table,
    and its gRPC server would start: the TLS files and tokens are where the env says."""
    objects = request.getfixturevalue(objs)
    for service in SERVICES:
        pod = objects[("Deployment", name(service))]["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert REQUIRED_ENV <= set(env), f"{service}: missing {sorted(REQUIRED_ENV - set(env))}"
        for key in SECRET_ENV:
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"], (service, key)
        settings = load_pod_settings(objects, pod, tmp_path, monkeypatch, secret_data)
        assert settings.kafka.bootstrap_servers == env["STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS"]["value"]
        assert settings.service.grpc_port == int(env["STUDIOLINE_SERVICE__GRPC_PORT"]["value"])
        assert settings.service.metrics_address == "0.0.0.0", "Prometheus could not scrape a loopback port"
        assert settings.grpc.reflection is False
        settings.grpc.check_serving()
        if objs == "insecure_objects":
            assert settings.grpc.insecure and settings.grpc.tokens_file is None and not settings.grpc.health_port
        else:
            assert not settings.grpc.insecure and settings.grpc.health_port == 50052
            server_credentials(settings.grpc.tls)  # reads the PEM files
            assert TokenStore(settings.grpc.tokens_file).tenant_for(TOKEN) == "acme"
            assert (settings.grpc.tls.client_ca_file is not None) == (objs == "prod_objects")
        assert settings.tenants.keys() == ({"acme", "shop-b"} if objs == "prod_objects" else set())
        expected_topics = (3, 259200000) if objs == "prod_objects" else (1, 604800000)
        assert (settings.kafka.replication_factor, settings.kafka.retention_ms) == expected_topics
        if objs == "prod_objects":  # SASL credentials come from the named Secret, never as values
            assert settings.kafka.security_protocol == "SASL_SSL"
            for key in ("STUDIOLINE_KAFKA__SASL_USERNAME", "STUDIOLINE_KAFKA__SASL_PASSWORD"):
                assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "studioline-kafka-user"
        else:
            assert "STUDIOLINE_KAFKA__SASL_PASSWORD" not in env
        Router.from_settings(settings)  # raises on an invalid table


def test_health_port_may_not_be_a_service_port(chart):
    with pytest.raises(helm.HelmRenderError, match="grpc.healthPort 9100"):
        chart.render({"grpc": {"healthPort": 9100}}, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects"])
def test_grpc_tls_and_tokens_come_from_the_secrets(request, objs):
    """No plain-text gRPC unless asked: TLS material and tokens are mounted read-only from the
    Secrets the values name, the tokens as a directory (a subPath would never see an update)."""
    objects = request.getfixturevalue(objs)
    mutual = objs == "prod_objects"
    for service in SERVICES:
        pod = objects[("Deployment", name(service))]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        assert "STUDIOLINE_GRPC__INSECURE" not in env, service
        assert TLS_ENV <= set(env), service
        assert ("STUDIOLINE_GRPC__TLS__CLIENT_CA_FILE" in env) == mutual, service
        assert int(env["STUDIOLINE_GRPC__HEALTH_PORT"]["value"]) == {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
        mounts = secret_mounts(pod)
        by_secret = {secret["secretName"]: path for path, secret in mounts.items()}
        assert set(by_secret) == {"studioline-grpc-tls", "studioline-grpc-tokens"}
        tls_keys = {"tls.crt": "STUDIOLINE_GRPC__TLS__CERT_FILE", "tls.key": "STUDIOLINE_GRPC__TLS__KEY_FILE"}
        if mutual:
            tls_keys["ca.crt"] = "STUDIOLINE_GRPC__TLS__CLIENT_CA_FILE"
        for secret, keys in (("studioline-grpc-tls", tls_keys), ("studioline-grpc-tokens",
                                                                   {"tokens.yaml": "STUDIOLINE_GRPC__TOKENS_FILE"})):
            path = by_secret[secret]
            volume = mounts[path]
            assert {i["key"]: i["path"] for i in volume["items"]} == {k: k for k in keys}, (service, secret)
            assert volume["defaultMode"] & 0o007 == 0, "the Secret files are not world-readable"
            for key, var in keys.items():
                assert env[var]["value"] == f"{path}/{key}", (service, var)
        for m in c["volumeMounts"]:
            if m["mountPath"] in mounts:
                assert m["readOnly"] is True and "subPath" not in m, (service, m)


def test_insecure_grpc_only_when_the_values_say_so(insecure_objects):
    for service in SERVICES:
        pod = insecure_objects[("Deployment", name(service))]["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert env["STUDIOLINE_GRPC__INSECURE"]["value"] == "true"
        assert not TLS_ENV & set(env) and "STUDIOLINE_GRPC__TLS__CLIENT_CA_FILE" not in env
        assert not secret_mounts(pod), service
    policy = insecure_objects[("NetworkPolicy", f"{RELEASE}-studioline")]["spec"]
    assert all(p["port"] != "health" for rule in policy["ingress"] for p in rule["ports"])


@pytest.mark.parametrize("objs", ["default_objects", "prod_objects"])
def test_network_policies_fence_the_line(request, objs):
    """Only the line's own steps and the named namespaces reach gRPC, only the monitoring
    namespace the metrics; the pods reach DNS, the broker and S3 on their ports, and each other's
    gRPC. The init Job serves nothing and reaches DNS, the broker and S3."""
    objects = request.getfixturevalue(objs)
    values = PROD_VALUES if objs == "prod_objects" else {}
    np_values = {**yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"], **values.get("networkPolicy", {})}
    assert kinds(objects, "NetworkPolicy") == {f"{RELEASE}-studioline", f"{RELEASE}-studioline-init"}
    policy = objects[("NetworkPolicy", f"{RELEASE}-studioline")]["spec"]
    init_policy = objects[("NetworkPolicy", f"{RELEASE}-studioline-init")]["spec"]
    init_labels = objects[("Job", f"{RELEASE}-studioline-init")]["spec"]["template"]["metadata"]["labels"]
    for service in SERVICES:
        assert selects(policy["podSelector"], pod_labels(objects, service)), service
        assert not selects(init_policy["podSelector"], pod_labels(objects, service)), service
    assert selects(init_policy["podSelector"], init_labels) and not selects(policy["podSelector"], init_labels)
    assert set(policy["policyTypes"]) == set(init_policy["policyTypes"]) == {"Ingress", "Egress"}

    ingress = {p["port"]: rule.get("from") for rule in policy["ingress"] for p in rule["ports"]}
    assert set(ingress) == {"grpc", "metrics", "health"}
    grpc_from = ingress["grpc"]
    assert selects(grpc_from[0]["podSelector"], pod_labels(objects, "classifier")) and "namespaceSelector" not in grpc_from[0]
    assert not selects(grpc_from[0]["podSelector"], init_labels)
    namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in grpc_from[1:]]
    assert namespaces == np_values["grpcClientNamespaces"]
    assert ingress["metrics"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert ingress["health"] is None  # the kubelet's probes, from the node
    # Every named port is a port of every step's pod.
    for service in SERVICES:
        names = {p["name"] for p in container(objects, service)["ports"]}
        assert set(ingress) <= names, service
    assert "ingress" not in init_policy, "the init Job admits nothing"

    infra_ports = {p for p in np_values["kafkaPorts"] + np_values["s3Ports"]}
    for spec in (policy, init_policy):
        by_port = {(p["port"], p.get("protocol", "TCP")): rule.get("to") for rule in spec["egress"] for p in rule["ports"]}
        assert {(53, "UDP"), (53, "TCP")} <= set(by_port)
        assert {p for p, proto in by_port if isinstance(p, int) and p != 53} == infra_ports
        for port in infra_ports:
            assert by_port[(port, "TCP")] == (np_values["egressTo"] or None)
        assert all(rule.get("ports") for rule in spec["egress"]), "every egress rule names its ports"
    step_to = {p["port"]: rule.get("to") for rule in policy["egress"] for p in rule["ports"]}["grpc"]
    assert len(step_to) == 1 and selects(step_to[0]["podSelector"], pod_labels(objects, "segmenter"))


def test_network_policies_can_be_left_out(chart):
    assert not kinds(render(chart, {"networkPolicy": {"enabled": False}}), "NetworkPolicy")


def test_tenants_reach_the_config_file(default_objects, prod_objects):
    def config(objects):
        return yaml.safe_load(objects[("ConfigMap", f"{RELEASE}-studioline-config")]["data"]["config.yaml"])

    assert "tenants" not in config(default_objects)
    prod = config(prod_objects)
    assert prod["tenants"] == PROD_VALUES["tenants"]
    assert prod["limits"]["max_pixels"] == 50000000, "the rest of `config:` is kept"


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
        # The routing step also reads each tenant's ingest topic.
        ingest = {"studioline.ingest", "studioline.ingest.acme", "studioline.ingest.shop-b"}
        expected = {f"studioline.step.{service}"} | (ingest if steps.spec(service).routes else set())
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


def test_init_job_is_a_hook_that_creates_topics_buckets_and_pushes_models(prod_objects, tmp_path, monkeypatch):
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
        # `init` and `models push` talk to Kafka and S3 and never serve gRPC: no gRPC TLS to need.
        assert not [k for k in env if k.startswith("STUDIOLINE_GRPC__")], c["name"]
        # It reads the tenants from the same config file: their ingest topics get created.
        settings = load_pod_settings(prod_objects, {**pod, "containers": [c]}, tmp_path, monkeypatch, {})
        assert {"studioline.ingest.acme", "studioline.ingest.shop-b"} <= set(all_topics(settings))
