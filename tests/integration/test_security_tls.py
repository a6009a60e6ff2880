"""`lablink serve --ssl-certfile/--ssl-keyfile` with a self-signed certificate made here:
https works, every cookie (ours, Panel's, Bokeh's) is Secure, and HSTS is on every response."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.server import RunningServer, make_server_database
from tests.support.admin_login import log_in
from tests.support.waiting import wait_until


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lablink test")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class TlsServer(RunningServer):
    """A `lablink serve` on https, trusted through the test's own certificate."""

    certificate: Path | None = None
    key: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def trust(self) -> ssl.SSLContext:
        assert self.certificate is not None
        return ssl.create_default_context(cafile=str(self.certificate))

    def start(self) -> TlsServer:
        command = [sys.executable, "-m", "lablink_core.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--ssl-certfile", str(self.certificate)]
        command += ["--ssl-keyfile", str(self.key)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env(), stdout=log, stderr=log)
        wait_until(self.healthy, timeout=60, message=f"server on {self.url} ({self.log_path})")
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.log()[-3000:]}")
        try:
            reply = httpx.get(f"{self.url}/api/health", timeout=2, verify=self.trust())
        except httpx.HTTPError:
            return False
        return reply.status_code == 200


@pytest.fixture(scope="module")
def tls_server(
    postgres_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    certificate, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    database = make_server_database(postgres_server_url, template_database)
    server = TlsServer(database, certificate=certificate, key=key).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def cookies_of(reply: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in reply.headers.get_list("Set-Cookie")}


def test_https_serves_pages_and_the_api_with_hsts(tls_server: TlsServer) -> None:
    for path in ("/", "/api/health", "/login", "/static/js/bokeh.min.js"):
        reply = httpx.get(f"{tls_server.url}{path}", verify=tls_server.trust(), timeout=30)
        assert reply.status_code == 200, path
        assert reply.headers["Strict-Transport-Security"].startswith("max-age="), path
    with pytest.raises(httpx.HTTPError):  # plain http on the same port gets nothing
        httpx.get(f"http://127.0.0.1:{tls_server.port}/api/health", timeout=5)


def test_every_cookie_is_secure_under_https(tls_server: TlsServer) -> None:
    verify = tls_server.trust()
    guest = httpx.get(f"{tls_server.url}/", verify=verify, timeout=30)
    login_page = httpx.get(f"{tls_server.url}/login?next=/admin", verify=verify, timeout=30)
    logged_in = log_in(tls_server.url, verify=verify)
    assert logged_in.status_code == 302
    seen = {**cookies_of(guest), **cookies_of(login_page), **cookies_of(logged_in)}
    assert {"is_guest", "next_url", "lablink_admin", "user", "id_token"} <= seen.keys()
    for name, line in seen.items():
        attributes = [part.strip().lower() for part in line.split(";")]
        assert "secure" in attributes, name
    session = logged_in.cookies["lablink_admin"]
    listing = httpx.get(
        f"{tls_server.url}/api/vms",
        headers={"Cookie": f"lablink_admin={session}"},
        verify=verify,
        timeout=30,
    )
    assert listing.status_code == 200
    assert listing.headers["Strict-Transport-Security"].startswith("max-age=")
