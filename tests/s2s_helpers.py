"""Federation test helpers: a throw-away test CA (made with `cryptography`), pairs of
Rampart servers on loopback with their own domains, and a raw server-to-server client
for hostile-peer tests."""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contextlib import asynccontextmanager, contextmanager

from rampart_harness import HOST, RampartServer, make_client

NS_SERVER = "jabber:server"


class CertAuthority:
    """A certificate authority in a directory; issues leaf certificates for domains."""

    def __init__(self, directory: Path, name: str = "Rampart Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = self.dir / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, *names: str) -> tuple[Path, Path]:
        """(cert, key) PEM files for `names` (serverAuth and clientAuth, as s2s needs)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = names[0].replace("*", "_")
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path


def s2s_server(workdir: Path, ca: CertAuthority, domain: str, allow: list[str], extra: dict | None = None,
               guard: dict | None = None, limits: dict | None = None,
               extra_toml: str = "") -> RampartServer:
    """A Rampart server for `domain` with a certificate from `ca` (valid for the domain and
    its subdomains, e.g. the group chat service), federation enabled."""
    table = {"enabled": True, "allow": allow, "ca_file": str(ca.path), "public_roots": False,
             "connect_timeout_secs": 10, "retry_max_secs": 2}
    table.update(extra or {})
    if "routes" in table:
        table["routes"] = dict(table["routes"])
    return RampartServer(workdir, domain=domain, tls=ca.issue(domain, f"*.{domain}"), ca_path=ca.path,
                         s2s=table, guard=guard, limits=limits, extra_toml=extra_toml)


def route_to(server: RampartServer, peer: RampartServer, direct_tls: bool = False) -> None:
    """Add a static route on `server` to `peer`'s s2s listener (rewrites the config)."""
    routes = dict(server.s2s.get("routes", {}))
    routes[f'"{peer.domain}"'] = f"{'tls:' if direct_tls else ''}{HOST}:{peer.s2s_port}"
    server.s2s["routes"] = routes
    server.write_config()


class RawS2S:
    """A blocking raw server-to-server client (the hostile peer)."""

    def __init__(self, port: int, from_domain: str, to_domain: str, timeout: float = 15):
        self.from_domain, self.to_domain = from_domain, to_domain
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.closed = False

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def header(self, from_domain: str | None = None) -> None:
        f = from_domain or self.from_domain
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' "
                  f"xmlns:stream='http://etherx.jabber.org/streams' from='{f}' "
                  f"to='{self.to_domain}' version='1.0'>")

    def read_until(self, *needles: str, timeout: float = 15) -> str:
        """Read until one of `needles` (or the stream closing) is in the buffer; returns
        the buffer as text and clears it. Does not raise on a closed connection."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.buf.decode("utf-8", "replace")
            if any(n in text for n in needles) or "</stream:stream>" in text or self.closed:
                self.buf = b""
                return text
            if time.monotonic() > deadline:
                self.buf = b""
                return text
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                self.closed = True
                continue
            if not chunk:
                self.closed = True
                continue
            self.buf += chunk

    def starttls(self, cert: tuple[Path, Path] | None, cafile: Path) -> str:
        """STARTTLS with `cert` as the client certificate; returns the features after TLS
        (or what was received before the connection closed)."""
        self.header()
        feats = self.read_until("</stream:features>")
        assert "starttls" in feats, feats
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert "proceed" in self.read_until("proceed"), "no <proceed/>"
        ctx = ssl.create_default_context(cafile=str(cafile))
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.to_domain)
        try:
            self.header()
        except (ssl.SSLError, OSError):
            self.closed = True
            return ""
        return self.read_until("</stream:features>", "<stream:features/>")

    def authenticate(self, cert: tuple[Path, Path], cafile: Path) -> None:
        """STARTTLS + SASL EXTERNAL + stream restart, as an honest peer would."""
        feats = self.starttls(cert, cafile)
        assert "EXTERNAL" in feats, feats
        authzid = base64.b64encode(self.from_domain.encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>")
        assert "success" in self.read_until("success", "failure"), "SASL EXTERNAL failed"
        self.header()
        feats = self.read_until("</stream:features>", "<stream:features/>")
        assert "features" in feats, feats

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@contextmanager
def federated_pair(work: Path, beta_guard: dict | None = None):
    """(alpha, beta): alpha.test and beta.test, certificates from one test CA, static routes
    and allow-lists naming each other, both started; stopped on exit."""
    ca = CertAuthority(work / "ca")
    alpha = s2s_server(work / "alpha", ca, "alpha.test", ["beta.test"])
    beta = s2s_server(work / "beta", ca, "beta.test", ["alpha.test"], guard=beta_guard)
    route_to(alpha, beta)
    route_to(beta, alpha)
    alpha.start()
    beta.start()
    try:
        yield alpha, beta
    finally:
        alpha.stop()
        beta.stop()


@asynccontextmanager
async def online(server: RampartServer, user, resource: str = "pc"):
    """A slixmpp client of `user` on `server`, logged in and available for the block."""
    c = make_client(server, user, resource)
    await c.login()
    try:
        await c.go_online()
        yield c
    finally:
        await c.logout()
        c.kill()


def wait_for(pred, timeout: float = 30, what: str = "a condition"):
    """Poll `pred` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)
