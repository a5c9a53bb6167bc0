"""Threat defense with the ClamAV engine end to end: a real ``clamd`` with the
offline signature database from /work/shared/clamav (copied into
tests/data/guard/clamav: ``custom.ndb`` hex signatures, ``custom.hdb`` EICAR
by MD5), the server configured with ``[guard.clamav] address =
"tcp:127.0.0.1:PORT"`` (see crates/rampart-guard/src/scan.rs and
crates/rampart-server/src/pipeline.rs).

Covers:

* the fixture's clamd answers PING and finds the custom signatures;
* a message whose body matches ``Custom.Test.EICARLike-1`` (an EICAR-like
  string at offset 0 that lacks the end of the real EICAR string, so the
  built-in YARA rule does not match it — checked with a YARA-only scan) is
  refused with ``policy-violation`` naming the ClamAV signature; the
  recipient gets nothing;
* ``rampart scan`` with clamd: the EICAR-like file is FOUND by clamd, a clean
  file is OK. The hash signature in custom.hdb is the MD5 of the real EICAR
  file, which the YARA engine (scanned first; the first match wins) always
  reports itself, so a hash-only ClamAV match cannot be observed through
  Rampart; the fixture check asserts clamd does report it directly;
* fail closed: with clamd stopped, a message is not delivered — the sender
  gets ``service-unavailable`` of type ``wait`` — and ``rampart scan`` reports
  ERROR rather than OK; after clamd is back, messages flow again.

Skipped, with the reason printed, only when ``clamd`` is not installed
(.ci/run installs Debian's clamav and clamav-daemon).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from rampart_harness import (
    HOST, RampartServer, free_ports, send_msg_id, stanza_error, stanza_error_text,
)

DATA = Path(__file__).resolve().parent / "data" / "guard" / "clamav"
WORK_ROOT = Path(__file__).resolve().parent / ".work"

EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# Matches custom.ndb "Custom.Test.EICARLike-1" (prefix at offset 0, '*', the
# EICAR name) but not the YARA rule, which needs the whole EICAR string.
EICAR_LIKE = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + " quarantine drill EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
CLAM_SIG = "Custom.Test.EICARLike-1"

CLAMD = shutil.which("clamd") or next(
    (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if Path(p).exists()), None)


def clamd_command(port: int, payload: bytes | None = None, timeout: float = 5) -> str:
    """PING (payload None) or INSTREAM a payload; clamd's reply."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        if payload is None:
            s.sendall(b"zPING\0")
        else:
            s.sendall(b"zINSTREAM\0" + struct.pack(">I", len(payload)) + payload
                      + struct.pack(">I", 0))
        buf = b""
        while b"\0" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\0", 1)[0].decode(errors="replace")


class Clamd:
    def __init__(self, workdir: Path):
        self.dir = workdir
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "db").mkdir(parents=True)
        for f in ("custom.ndb", "custom.hdb"):
            shutil.copy(DATA / f, self.dir / "db" / f)
        (self.port,) = free_ports(1)
        self.conf = self.dir / "clamd.conf"
        self.conf.write_text("\n".join([
            "Foreground yes",
            f"TCPSocket {self.port}",
            f"TCPAddr {HOST}",
            f"DatabaseDirectory {self.dir / 'db'}",
            f"TemporaryDirectory {self.dir}",
            f"LogFile {self.dir / 'clamd.log'}",
            f"PidFile {self.dir / 'clamd.pid'}",
            "SelfCheck 0",
            "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [CLAMD, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
            stdout=open(self.dir / "clamd.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.proc.returncode}: "
                                   + (self.dir / "clamd.out").read_text()[-2000:])
            try:
                if clamd_command(self.port, timeout=1) == "PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"clamd did not answer PING within {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Nothing may answer on the port any more.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                time.sleep(0.1)
            except OSError:
                return


@pytest.fixture(scope="module")
def clamd():
    if CLAMD is None:
        reason = ("clamd is not installed (apt-get install clamav clamav-daemon); "
                  "skipping the ClamAV end-to-end tests")
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    d = Clamd(WORK_ROOT / "test_guard_clamav.clamd")
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def server(clamd):
    srv = RampartServer(WORK_ROOT / "test_guard_clamav", guard={
        "clamav": {"address": f"tcp:{HOST}:{clamd.port}"},
    })
    try:
        srv.start()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


async def pair(new_user, clients):
    a, b = new_user("snd"), new_user("rcv")
    ca, cb = await clients(a, "pc"), await clients(b, "pc")
    await ca.go_online()
    await cb.go_online()
    return a, b, ca, cb


async def refusal(client, mid: str, timeout: float = 10):
    err = await client.wait_message(lambda m: m["id"] == mid and m["type"] == "error",
                                    timeout=timeout, what=f"the error bounced for {mid}")
    return stanza_error(err), stanza_error_text(err)


async def sentinel_then_nothing_else(ca, cb, b, what):
    token = f"sentinel {secrets.token_hex(4)}"
    ca.send_msg(b.jid, token)
    await cb.wait_message(lambda m: m["body"] == token, timeout=10, what="the benign sentinel")
    await asyncio.sleep(0.3)
    leaked = cb.messages.unconsumed(lambda m: m["type"] != "error" and m["body"])
    assert not leaked, f"{what}: reached the recipient: {[m['body'][:80] for m in leaked]}"


def test_fixture_clamd_knows_the_custom_signatures(clamd):
    assert clamd_command(clamd.port) == "PONG"
    assert CLAM_SIG in clamd_command(clamd.port, EICAR_LIKE.encode())
    reply = clamd_command(clamd.port, EICAR.encode())
    assert "FOUND" in reply and "Custom.Test." in reply, reply
    assert clamd_command(clamd.port, b"hello, nothing to see") == "stream: OK"


def test_yara_alone_does_not_know_the_clamav_only_signature(server, tmp_path):
    """Precondition of the next test: without clamd the body is clean."""
    f = tmp_path / "drill.txt"
    f.write_text(EICAR_LIKE)
    conf = tmp_path / "yara-only.toml"
    conf.write_text(f'data_dir = "{tmp_path / "data"}"\n')  # no [guard.clamav]
    r = server.cli("scan", str(f), config=conf)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), (r.returncode, r.stdout, r.stderr)


async def test_clamav_signature_in_message_is_blocked(server, new_user, clients):
    a, b, ca, cb = await pair(new_user, clients)
    mid = send_msg_id(ca, b.jid, EICAR_LIKE)
    (cond, typ), text = await refusal(ca, mid)
    assert cond == "policy-violation", (cond, typ, text)
    assert CLAM_SIG in text and "signature" in text, text
    await sentinel_then_nothing_else(ca, cb, b, "the ClamAV-matched message")


def test_scan_cli_uses_clamd(server, tmp_path):
    like, clean, eicar = tmp_path / "drill.txt", tmp_path / "clean.txt", tmp_path / "eicar.com"
    like.write_text(EICAR_LIKE)
    clean.write_text("quarterly numbers attached\n")
    eicar.write_text(EICAR)
    r = server.cli("scan", str(like), str(clean), str(eicar))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    v = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert re.match(rf"clamd:{re.escape(CLAM_SIG)}\S* FOUND", v[str(like)]), v
    assert v[str(clean)] == "OK", v
    # YARA runs first and wins on the real EICAR file (custom.hdb's hash).
    assert "FOUND" in v[str(eicar)], v


async def test_clamd_down_means_messages_are_held(server, clamd, new_user, clients, tmp_path):
    a, b, ca, cb = await pair(new_user, clients)
    clamd.stop()
    try:
        body = "the slides for tomorrow are ready"
        mid = send_msg_id(ca, b.jid, body)
        (cond, typ), text = await refusal(ca, mid)
        assert (cond, typ) == ("service-unavailable", "wait"), (cond, typ, text)
        assert "could not be scanned" in text, text
        f = tmp_path / "clean.txt"
        f.write_text("nothing here\n")
        r = server.cli("scan", str(f))
        assert r.returncode != 0 and "ERROR" in r.stdout and "OK" not in r.stdout, (
            r.returncode, r.stdout, r.stderr)
        await cb.messages.assert_none(lambda m: m["body"] == body, within=1.0,
                                      what="the message held while clamd was down")
    finally:
        clamd.start()
    await sentinel_then_nothing_else(ca, cb, b, "the message held while clamd was down")
    assert re.search(r"threat scan failed: message held", server.log_text(limit=10**8)), \
        "the server did not log the held message"
