"""gRPC trust: TLS (and mutual TLS), per-tenant tokens, and what a tenant may read and write.
Certificates are generated here with the `cryptography` package."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from studioline.services.inpainter.step import InpainterStep
from studioline.shared.auth import token_digest
from studioline.shared.client import call_metadata, step_call, step_channel
from studioline.shared.config import S3Settings, Settings
from studioline.shared.embedded import EmbeddedS3, free_port
from studioline.shared.errors import ConfigError
from studioline.shared.grpc_server import GrpcServer
from studioline.shared.runtime import StepRunner
from studioline.shared.storage import Storage
from studioline.v1 import steps_pb2

pytestmark = pytest.mark.integration
TOKENS = {"shop-a": "token-of-shop-a", "shop-b": "token-of-shop-b", "expired": "an-old-token"}


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject_key, cn: str, issuer_key=None, issuer_cert=None, ca: bool = False, san: str | None = None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key or subject_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert(ca_key, "studioline test CA", ca=True)
    server_key, client_key = _key(), _key()
    files = {
        "ca.pem": _pem(ca),
        "server.pem": _pem(_cert(server_key, "localhost", ca_key, ca, san="localhost")),
        "server.key": _pem(server_key),
        "client.pem": _pem(_cert(client_key, "shop-a client", ca_key, ca)),
        "client.key": _pem(client_key),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: d / name for name in files}


def _write_tokens(path: Path, tenants=("shop-a", "shop-b"), expired=True) -> None:
    entries = [{"tenant": t, "sha256": token_digest(TOKENS[t])} for t in tenants]
    if expired:
        entries.append({"tenant": "shop-a", "sha256": token_digest(TOKENS["expired"]), "expires": "2020-01-01T00:00:00Z"})
    path.write_text(yaml.safe_dump(entries))


@pytest.fixture(scope="module")
def storage_settings(s3):
    storage = Storage(S3Settings(endpoint=s3, access_key=EmbeddedS3.access_key, secret_key=EmbeddedS3.secret_key, secure=False))
    storage.ensure_buckets("shop-a-in", "shop-a-out", "shop-b-in", "shop-b-out", "models")
    photo = _png(np.full((40, 60, 3), 200, np.uint8))
    storage.put("shop-a-in", "mine.png", photo, "image/png")
    storage.put("shop-b-in", "secret.png", photo, "image/png")
    return storage


def _png(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(pki, storage_settings, s3, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    _write_tokens(tokens)
    settings = Settings(
        s3={"endpoint": s3, "access_key": EmbeddedS3.access_key, "secret_key": EmbeddedS3.secret_key, "secure": False},
        grpc={"bind_address": "127.0.0.1", "tokens_file": str(tokens), "tokens_reload_s": 0.1, "health_port": free_port(),
              "tls": {"cert_file": str(pki["server.pem"]), "key_file": str(pki["server.key"]),
                      "client_ca_file": str(pki["ca.pem"])}},
        tenants={"shop-a": {"sources": ["shop-a-in"], "output_bucket": "shop-a-out"},
                 "shop-b": {"sources": ["shop-b-in"], "output_bucket": "shop-b-out"}},
    )
    srv = GrpcServer(StepRunner(InpainterStep(settings, None)), settings, storage_settings, None, 0)
    srv.start()
    srv.set_serving(True)
    yield srv, tokens
    srv.stop(0)


def _channel(pki, port, client_cert=True):
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca.pem"].read_bytes(),
        private_key=pki["client.key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client.pem"].read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", creds)


def _call(channel, request, token: str | None):
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return step_call(channel, "inpainter")(request, metadata=metadata, timeout=30)


def _ref(bucket, key, output_bucket=""):
    return steps_pb2.StepRequest(image=steps_pb2.ImageInput(ref={"bucket": bucket, "key": key}), output_bucket=output_bucket)


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def test_tls_and_a_token_work_and_outputs_land_under_the_tenant(server, pki, storage_settings):
    srv, _ = server
    with _channel(pki, srv.port) as channel:
        reply = _call(channel, _ref("shop-a-in", "mine.png", "shop-a-out"), TOKENS["shop-a"])
        (out,) = reply.outputs
        assert out.ref.bucket == "shop-a-out" and out.ref.key.startswith("shop-a/")
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token
        # Reflection is off unless enabled.
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        code, _ = _code(lambda: list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))))
        assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("token, fragment", [(None, "no token"), ("guessed", "not known"), (TOKENS["expired"], "expired")])
def test_calls_without_a_valid_token_are_unauthenticated(server, pki, token, fragment):
    srv, _ = server
    with _channel(pki, srv.port) as channel:
        code, details = _code(lambda: _call(channel, _ref("shop-a-in", "mine.png"), token))
    assert code == grpc.StatusCode.UNAUTHENTICATED and fragment in details


def test_a_revoked_token_stops_working_without_a_restart(server, pki):
    srv, tokens = server
    with _channel(pki, srv.port) as channel:
        assert _code(lambda: _call(channel, _ref("shop-b-in", "secret.png"), TOKENS["shop-b"]))[0] == grpc.StatusCode.OK
        _write_tokens(tokens, tenants=("shop-a",))
        time.sleep(0.3)  # past tokens_reload_s
        try:
            code, _ = _code(lambda: _call(channel, _ref("shop-b-in", "secret.png"), TOKENS["shop-b"]))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        finally:
            _write_tokens(tokens)
            time.sleep(0.3)


def test_another_tenants_objects_and_the_line_buckets_are_denied_alike(server, pki):
    srv, _ = server
    a = TOKENS["shop-a"]
    with _channel(pki, srv.port) as channel:
        exists = _code(lambda: _call(channel, _ref("shop-b-in", "secret.png"), a))
        missing = _code(lambda: _call(channel, _ref("shop-b-in", "no-such.png"), a))
        no_bucket = _code(lambda: _call(channel, _ref("nobody-has-this", "x.png"), a))
        models = _code(lambda: _call(channel, _ref("models", "u2net.onnx"), a))
        # Same status and the same words whether the object exists or not: no existence oracle.
        assert {exists[0], missing[0], no_bucket[0], models[0]} == {grpc.StatusCode.PERMISSION_DENIED}
        assert exists[1] == missing[1] and "shop-b-in" not in exists[1] and "secret" not in exists[1]
        for bucket in ("shop-b-out", "models", "shop-a-in"):
            code, _ = _code(lambda: _call(channel, _ref("shop-a-in", "mine.png", bucket), a))
            assert code == grpc.StatusCode.PERMISSION_DENIED, bucket


def test_a_client_configured_like_the_server_gets_through(server, pki):
    """`studioline` callers take the same config: CA, client certificate and token."""
    srv, _ = server
    settings = Settings(grpc={"client": {"ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]),
                                         "key_file": str(pki["client.key"]), "token": TOKENS["shop-a"]}})
    with step_channel(settings, f"localhost:{srv.port}") as channel:
        reply = step_call(channel, "inpainter")(_ref("shop-a-in", "mine.png"), metadata=call_metadata(settings), timeout=30)
    assert len(reply.outputs) == 1 and reply.report.step == "inpainter"


def test_the_probe_port_serves_health_alone_in_plain_text(server):
    srv, _ = server
    with grpc.insecure_channel(f"127.0.0.1:{srv.health_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="studioline.v1.Inpainter"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        code, _ = _code(lambda: _call(channel, _ref("shop-a-in", "mine.png"), TOKENS["shop-a"]))
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_plain_text_and_certificate_less_clients_are_refused(server, pki):
    srv, _ = server
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        code, _ = _code(lambda: _call(channel, _ref("shop-a-in", "mine.png"), TOKENS["shop-a"]))
    assert code == grpc.StatusCode.UNAVAILABLE
    with _channel(pki, srv.port, client_cert=False) as channel:  # mutual TLS: a client certificate is required
        code, _ = _code(lambda: _call(channel, _ref("shop-a-in", "mine.png"), TOKENS["shop-a"]))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_a_server_does_not_start_insecure_unless_told():
    with pytest.raises(ConfigError, match="gRPC needs TLS"):
        GrpcServer(StepRunner(InpainterStep(Settings(), None)), Settings(), None, None, 0)
