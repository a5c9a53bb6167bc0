"""The HTTPS upload listener under hostile clients (raw sockets, no slixmpp):

* plaintext HTTP on the listener gets no HTTP answer (there is no plaintext path);
* the per-address connection limit (``[upload] max_connections_per_ip``);
* a client that never finishes its request headers is cut off (slowloris);
* paths outside the upload routes, traversal attempts and bogus slot URLs get
  404/403, never a file;
* a PUT larger than ``max_file_size`` is refused with 413 without the server
  reading it all.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from rampart_harness import HOST, RampartServer
from conftest import WORK_ROOT

PER_IP = 4
MAX_FILE_SIZE = 64 * 1024


@pytest.fixture(scope="module")
def server():
    srv = RampartServer(WORK_ROOT / "test_upload_hostile", http=True)
    srv.extra_toml = "\n".join([
        "[upload]",
        f"max_file_size = {MAX_FILE_SIZE}",
        f"max_connections_per_ip = {PER_IP}",
        f'public_url = "https://localhost:{srv.http_port}"',
    ])
    srv.write_config()
    srv.start()
    yield srv
    srv.stop()


def tls_connect(server, timeout: float = 20) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    raw = socket.create_connection((HOST, server.http_port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def request(server, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    s = tls_connect(server, timeout)
    try:
        s.sendall(head.encode() + body)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"Connection: close" not in head.encode():
                break
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        return status, data
    finally:
        s.close()


def read_until_closed(sock, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLError, OSError):
        return data


def test_plaintext_http_gets_no_http_answer(server):
    s = socket.create_connection((HOST, server.http_port), timeout=20)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = read_until_closed(s, 20)
    finally:
        s.close()
    assert b"HTTP/" not in data, data[:200]


def test_unknown_paths_and_bogus_slots(server):
    for path in ["/", "/etc/passwd", "/file/../../server-secret", "/file/%2e%2e/%2e%2e/rampart.db",
                 "/file/" + "a" * 32 + "/" + "b" * 32 + "/x.txt", "/upload/x/1/y/z"]:
        status, data = request(server, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert status in (400, 403, 404, 405), (path, data[:300])
    status, data = request(server, "GET /file/" + "a" * 32 + "/" + "b" * 32 + "/x.txt HTTP/1.1\r\n"
                           "Host: localhost\r\nConnection: close\r\n\r\n")
    assert status == 403, data[:300]  # a forged signature


def test_oversized_put_is_refused_early(server):
    head = ("PUT /upload/" + "a" * 32 + "/9999999999/" + "b" * 32 + "/x.bin HTTP/1.1\r\n"
            f"Host: localhost\r\nContent-Length: {100 * 1024 * 1024}\r\nConnection: close\r\n\r\n")
    t0 = time.monotonic()
    status, data = request(server, head, b"x" * 1024)
    assert status == 413, data[:300]
    assert time.monotonic() - t0 < 20


def test_connection_limit_per_address(server):
    held = []
    try:
        for _ in range(PER_IP):
            held.append(tls_connect(server))
        # One more from the same address is closed at once (no TLS handshake).
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            extra = tls_connect(server, timeout=20)
            extra.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if not extra.recv(1):
                raise ConnectionResetError("closed")
    finally:
        for s in held:
            s.close()
    # Once they are gone, connections are accepted again.
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _ = request(server, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert status == 404
            break
        except (ssl.SSLError, ConnectionResetError, OSError):
            assert time.monotonic() < deadline, "connections still refused after the others closed"
            time.sleep(0.5)


def test_slow_headers_are_cut_off(server):
    s = tls_connect(server)
    try:
        s.sendall(b"GET /file/")
        t0 = time.monotonic()
        data = read_until_closed(s, 60)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    # Closed (hyper may answer 408 first) after the 10 s header deadline, not held open.
    assert elapsed < 45, elapsed
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
