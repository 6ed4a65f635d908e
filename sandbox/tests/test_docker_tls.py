"""The Docker Engine behind mutual TLS, like CircleCI's remote Docker: a
client with the sandbox's client certificate gets the engine, streaming and
upgraded connections included; any other client is refused."""

from __future__ import annotations

import io
import socket

import docker
import pytest
import requests
from conftest import ENDPOINTS, unique

from berth_sandbox.__main__ import environment
from berth_sandbox.config import BASE_IMAGE
from berth_sandbox.dockertls import make_authority


@pytest.fixture(autouse=True)
def own_ca_only(monkeypatch):
    """requests prefers these variables to the CA a Docker client is given."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def tls_client(cert_path, with_certificate: bool = True) -> docker.DockerClient:
    """A client as DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=`cert_path` makes one;
    it verifies the server against the sandbox's CA."""
    ca = str(ENDPOINTS.docker_cert_path / "ca.pem")
    cert = (str(cert_path / "cert.pem"), str(cert_path / "key.pem")) if with_certificate else None
    tls = docker.tls.TLSConfig(client_cert=cert, ca_cert=ca, verify=True)
    return docker.DockerClient(base_url=ENDPOINTS.docker_tls_host, tls=tls, timeout=60)


def test_env_names_the_tls_front():
    env = environment(ENDPOINTS)
    assert env["BERTH_SANDBOX_DOCKER_TLS_HOST"] == f"tcp://127.0.0.1:{ENDPOINTS.docker_tls_port}"
    assert env["BERTH_SANDBOX_DOCKER_CERT_PATH"] == str(ENDPOINTS.docker_cert_path)
    assert "DOCKER_HOST" not in env
    assert sorted(p.name for p in ENDPOINTS.docker_cert_path.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]


def test_a_client_with_our_certificate_gets_the_engine(engine):
    client = tls_client(ENDPOINTS.docker_cert_path)
    assert client.ping() is True
    assert client.version()["ApiVersion"] == engine.version()["ApiVersion"]

    # A build streams its context up and its progress down.
    tag = f"berth-sandbox/tests-tls-{unique('build')}:1"
    dockerfile = f"FROM {BASE_IMAGE}\nRUN echo built-through-tls > /built\n".encode()
    try:
        image, output = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        assert any("Successfully built" in line.get("stream", "") for line in output)
        assert engine.images.get(tag).id == image.id

        # exec is an upgraded (hijacked) connection.
        container = client.containers.run(tag, ["sleep", "30"], detach=True, network_mode="none")
        try:
            result = container.exec_run(["cat", "/built"])
            assert (result.exit_code, result.output) == (0, b"built-through-tls\n")
        finally:
            container.remove(force=True)
    finally:
        engine.images.remove(tag, force=True)


def test_a_client_without_a_certificate_is_refused():
    with pytest.raises((docker.errors.DockerException, requests.exceptions.ConnectionError)):
        tls_client(ENDPOINTS.docker_cert_path, with_certificate=False).ping()


def test_a_certificate_from_another_ca_is_refused(tmp_path):
    make_authority(tmp_path)
    with pytest.raises((docker.errors.DockerException, requests.exceptions.ConnectionError)):
        tls_client(tmp_path / "client").ping()


def test_plain_http_is_refused():
    with socket.create_connection(("127.0.0.1", ENDPOINTS.docker_tls_port), timeout=10) as sock:
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:
            answer = b""
    assert b"OK" not in answer
