"""TLS and bearer-token authentication on a real server."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tierwise.serving.client import open_channel
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import run_serve

TOKEN = "s3cret-token"
REQUEST = pb.PredictRequest(prompt="Say hello to the team.")


def self_signed(directory):
    """A throwaway certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, trained_bundle, token_file):
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    args = ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", "0", "--no-metrics"]
    with ServerProcess(
        [*args, "--tls-cert", str(cert), "--tls-key", str(key), "--auth-token-file", str(token_file)]
    ) as p:
        p.cert = cert
        yield p


@pytest.fixture(scope="module")
def token_server(trained_bundle, token_file):
    args = ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", "0", "--no-metrics"]
    with ServerProcess([*args, "--auth-token-file", str(token_file)]) as process:
        yield process


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_tls_with_the_right_token_answers(tls_server):
    with open_channel(tls_server.target, ca_cert=tls_server.cert, token=TOKEN) as channel:
        assert pb_grpc.RouterStub(channel).Predict(REQUEST, timeout=10).tier


def test_tls_rejects_a_missing_or_wrong_token(tls_server):
    for token in (None, "wrong-token"):
        with open_channel(tls_server.target, ca_cert=tls_server.cert, token=token) as channel:
            stub = pb_grpc.RouterStub(channel)
            assert status_of(lambda stub=stub: stub.Predict(REQUEST, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
            stream = lambda stub=stub: list(stub.PredictStream(iter([REQUEST]), timeout=10))  # noqa: E731
            assert status_of(stream) == grpc.StatusCode.UNAUTHENTICATED


def test_tls_server_does_not_speak_plaintext(tls_server):
    with grpc.insecure_channel(tls_server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        assert status_of(lambda: stub.Predict(REQUEST, timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_health_needs_no_token(tls_server):
    with open_channel(tls_server.target, ca_cert=tls_server.cert) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_token_over_plaintext(token_server):
    with open_channel(token_server.target, token=TOKEN) as channel:
        assert pb_grpc.RouterStub(channel).Predict(REQUEST, timeout=10).tier
    for token in (None, "nope"):
        with open_channel(token_server.target, token=token) as channel:
            stub = pb_grpc.RouterStub(channel)
            assert status_of(lambda stub=stub: stub.Predict(REQUEST, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED


def call_with(server, *authorization: str) -> grpc.StatusCode:
    """The status of a Predict sending these `authorization` metadata values (in order, duplicates kept)."""
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        try:
            stub.Predict(REQUEST, timeout=10, metadata=[("authorization", value) for value in authorization])
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_the_bearer_scheme_is_matched_in_any_case(token_server):
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert call_with(token_server, f"{scheme} {TOKEN}") == grpc.StatusCode.OK, scheme
    for value in (TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        assert call_with(token_server, value) == grpc.StatusCode.UNAUTHENTICATED, value


def test_several_authorization_headers_pass_only_if_every_one_holds_the_token(token_server):
    good, bad = f"Bearer {TOKEN}", "Bearer wrong-token"
    assert call_with(token_server, good, f"bearer {TOKEN}") == grpc.StatusCode.OK
    assert call_with(token_server, good, bad) == grpc.StatusCode.UNAUTHENTICATED
    assert call_with(token_server, bad, good) == grpc.StatusCode.UNAUTHENTICATED
    assert call_with(token_server, good, "") == grpc.StatusCode.UNAUTHENTICATED


def test_health_answers_without_a_token_on_a_plaintext_server(token_server):
    with grpc.insecure_channel(token_server.target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_needs_both_certificate_and_key(tmp_path, trained_bundle):
    cert, _ = self_signed(tmp_path)
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--tls-cert", str(cert)]
    result = run_serve(args)
    assert result.returncode == 2
    assert "TLS needs both --tls-cert and --tls-key" in result.stderr
