"""The local Docker Engine behind mutual TLS, as CI services with a remote
Docker offer it (CircleCI's `setup_remote_docker` sets DOCKER_HOST to a
`tcp://` address with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH).

The front listens on loopback only and lets in a client only with a
certificate from its own CA, as `dockerd --tlsverify` does
(https://docs.docker.com/engine/security/protect-access/#use-tls-https-to-protect-the-docker-daemon-socket).
After the handshake it carries bytes both ways to the engine's Unix socket,
so that upgraded (hijacked) connections work as they do on the engine: attach,
exec, builds and BuildKit sessions.

The certificates live in the state dir: `ca/` (the CA and its key),
`server/` (for 127.0.0.1) and `client/` (ca.pem, cert.pem, key.pem: what
DOCKER_CERT_PATH names). They are made once and kept while valid, so a shell
that exported DOCKER_CERT_PATH stays right across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import selectors
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import Endpoints

log = logging.getLogger("berth_sandbox.dockertls")

VALID_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
CHUNK = 256 * 1024


def engine_socket() -> str:
    """The engine's Unix socket: DOCKER_HOST's when it names one, as the
    agent's Docker client uses it too."""
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock"


# -- certificates -------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "berth sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject, key, issuer, issuer_key, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o600 if name.endswith("key.pem") else 0o644)


def _pem(item) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_authority(folder: Path) -> None:
    """A new CA in `folder/ca`, a server certificate for 127.0.0.1 in
    `folder/server` and a client certificate in `folder/client`, each
    folder with the CA as ca.pem."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("berth sandbox Docker CA")
    ca = _certificate(
        ca_name,
        ca_key,
        ca_name,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    leaves = {
        "server": (
            "127.0.0.1",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)],
        ),
        "client": ("berth sandbox client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    }
    for kind, (common_name, purpose, more) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(
            _name(common_name),
            key,
            ca_name,
            ca_key,
            [
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (_leaf_usage(), True),
                (x509.ExtendedKeyUsage([purpose]), False),
                (authority, False),
                *more,
            ],
        )
        _write(folder / kind, {"ca.pem": _pem(ca), "cert.pem": _pem(cert), "key.pem": _pem(key)})
    _write(folder / "ca", {"ca.pem": _pem(ca), "ca-key.pem": _pem(ca_key)})


def ensure_authority(folder: Path) -> None:
    """Keep the certificates while they are whole and valid for a while yet."""
    needed = [folder / kind / name for kind in ("server", "client") for name in ("ca.pem", "cert.pem", "key.pem")]
    if all(path.exists() for path in needed):
        cert = x509.load_pem_x509_certificate((folder / "server" / "cert.pem").read_bytes())
        if cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE:
            return
    make_authority(folder)


# -- the front ------------------------------------------------------------------


def server_context(folder: Path) -> ssl.SSLContext:
    """Mutual TLS: the server certificate, and client certificates from our CA only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(folder / "server" / "cert.pem", folder / "server" / "key.pem")
    context.load_verify_locations(folder / "server" / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def receive(sock: socket.socket) -> bytes:
    """What is there to read; b"" at the end. A TLS socket may hold
    decrypted bytes that the selector cannot see: take them too."""
    try:
        data = sock.recv(CHUNK)
        while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
            data += sock.recv(sock.pending())
        return data
    except OSError:
        return b""


def relay(client: ssl.SSLSocket, engine: socket.socket) -> None:
    """Bytes both ways, in one thread: a TLS socket must not be read and
    written from two threads at once. When the client is done sending (a
    hijacked stream's stdin closed), the engine hears EOF and may still
    answer; when the engine is done, so is the conversation."""
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ)
    selector.register(engine, selectors.EVENT_READ)
    try:
        while selector.get_map():
            for key, _ in selector.select():
                source = key.fileobj
                data = receive(source)
                if data:
                    (engine if source is client else client).sendall(data)
                elif source is client:
                    selector.unregister(client)
                    engine.shutdown(socket.SHUT_WR)
                else:
                    return
    except OSError as err:
        log.debug("docker TLS connection ended: %s", err)
    finally:
        selector.close()


class DockerTLSFront:
    """Listens on 127.0.0.1:`docker_tls_port` in the server's process, so it
    ends with it: nothing of it outlives `sandboxctl stop`."""

    def __init__(self, endpoints: Endpoints):
        self.endpoints = endpoints
        self.listener: socket.socket | None = None
        self.context: ssl.SSLContext | None = None
        # Connections that passed the handshake: tests tell a build through the front from one
        # through the local socket by it.
        self.connections = 0
        self._count = threading.Lock()

    def start(self) -> None:
        ensure_authority(self.endpoints.docker_tls_dir)
        self.context = server_context(self.endpoints.docker_tls_dir)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.endpoints.docker_tls_port))
        except OSError as err:
            listener.close()
            raise RuntimeError(
                f"the Docker TLS front cannot listen on 127.0.0.1:{self.endpoints.docker_tls_port}: {err}"
            ) from err
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self.accept, name="docker-tls", daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def accept(self) -> None:
        listener = self.listener
        while listener is not None and listener.fileno() != -1:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self.serve, args=(conn,), name="docker-tls-conn", daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """Handshake (refusing clients without a certificate from our CA),
        then carry the connection to the engine."""
        conn.settimeout(10)
        try:
            client = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ValueError) as err:
            log.info("docker TLS client refused: %s", err)
            conn.close()
            return
        with self._count:
            self.connections += 1
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            engine.connect(engine_socket())
            client.settimeout(None)
            relay(client, engine)
        except OSError as err:
            log.warning("docker engine unreachable at %s: %s", engine_socket(), err)
        finally:
            engine.close()
            close_tls(client)


def close_tls(client: ssl.SSLSocket) -> None:
    """Say close_notify, wait a moment for the client's, then close."""
    try:
        client.settimeout(1)
        client.unwrap().close()
    except (OSError, ValueError):
        client.close()
