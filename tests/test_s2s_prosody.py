"""Federation with a server nobody here wrote: Prosody from Debian (`/usr/bin/prosody`,
installed by `.ci/run`) on loopback, prosody.test, with a certificate from the same test CA
and SASL EXTERNAL both ways.

* Prosody connects to Rampart: it finds alpha.test through a hosts file given to its DNS
  resolver (libunbound `hoststxt`), so Rampart's s2s listener sits on port 5269 of a
  loopback address of its own; Rampart authenticates Prosody's certificate (SASL EXTERNAL)
  and delivers; its answer goes out over Rampart's own outbound link (static route).
* Rampart connects to Prosody first: Prosody offers XEP-0288 and answers over that link.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rampart_harness import HOST, User, free_ports, make_client
from s2s_helpers import CertAuthority, s2s_server

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s_prosody"
PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"

pytestmark = pytest.mark.skipif(not os.path.exists(PROSODY), reason="prosody is not installed")


class Prosody:
    """A Prosody instance in a directory (looks enough like RampartServer for Client)."""

    def __init__(self, workdir: Path, ca: CertAuthority, domain: str = "prosody.test"):
        self.dir = Path(workdir)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "data").mkdir(parents=True)
        self.domain = domain
        self.cert_path = ca.path
        self.c2s_port, self.s2s_port, self.c2s_tls_port = free_ports(3)
        cert, key = ca.issue(domain)
        self.hosts = self.dir / "hosts"
        self.hosts.write_text("")
        self.config = self.dir / "prosody.cfg.lua"
        self.config.write_text(f"""
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
interfaces = {{ "{HOST}" }}
local_interfaces = {{ "{HOST}" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {self.s2s_port} }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
certificates = "{self.dir}"
admins = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "s2s_bidi"; "posix" }}
modules_disabled = {{ "offline"; "s2s_auth_dane_in" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = true
ssl = {{ cafile = "{ca.path}" }}
log = {{ debug = "{self.dir}/prosody.log" }}
unbound = {{ hoststxt = "{self.hosts}" }}
VirtualHost "{domain}"
  ssl = {{ key = "{key}"; certificate = "{cert}"; cafile = "{ca.path}" }}
""")
        self.proc: subprocess.Popen | None = None

    def register(self, user: str, password: str) -> User:
        r = subprocess.run([PROSODYCTL, "--config", str(self.config), "register", user, self.domain, password],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"prosodyctl register: {r.stdout} {r.stderr}"
        return User(user, password, self.domain)

    def start(self, timeout: float = 30) -> None:
        log = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen([PROSODY, "--config", str(self.config), "-F"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        import socket
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prosody exited: {self.log()}")
            try:
                with socket.create_connection((HOST, self.s2s_port), timeout=0.5):
                    with socket.create_connection((HOST, self.c2s_port), timeout=0.5):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"prosody did not listen: {self.log()}")

    def log(self) -> str:
        out = []
        for f in ("stdout.log", "prosody.log"):
            p = self.dir / f
            if p.exists():
                out.append(p.read_text(errors="replace")[-8000:])
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def free_loopback_5269() -> str:
    """A loopback address (127.x.y.z) whose port 5269 is free: where Prosody, which looks
    peers up by name on the default port, finds Rampart."""
    import random
    import socket
    for _ in range(50):
        ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        s = socket.socket()
        try:
            s.bind((ip, 5269))
            return ip
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no loopback address with a free port 5269")


@pytest.fixture(scope="module")
def peers():
    ca = CertAuthority(WORK / "ca")
    prosody = Prosody(WORK / "prosody", ca)
    alpha = s2s_server(WORK / "alpha", ca, "alpha.test", ["prosody.test"],
                       extra={"routes": {'"prosody.test"': f"{HOST}:{prosody.s2s_port}"}})
    ip = free_loopback_5269()
    default = f's2s = "{HOST}:{alpha.s2s_port}"'
    base = alpha.config_text
    alpha.config_text = lambda: base().replace(default, f's2s = "{ip}:5269"')
    alpha.write_config()
    prosody.hosts.write_text(f"{ip} alpha.test\n")
    prosody.start()
    alpha.start()
    try:
        yield alpha, prosody
    finally:
        alpha.stop()
        prosody.stop()


async def test_prosody_connects_to_rampart(peers):
    """Prosody opens the first link (its user writes first): Rampart's inbound side."""
    alpha, prosody = peers
    a = alpha.add_user("amy")
    p = prosody.register("pia" + secrets.token_hex(3), "pw-" + secrets.token_hex(8))
    ca, cp = make_client(alpha, a, "pc"), make_client(prosody, p, "pc")
    await ca.login()
    await cp.login()
    try:
        await ca.go_online()
        cp.send_presence()
        tag = secrets.token_hex(4)
        cp.send_msg(a.jid, f"prosody first {tag}")
        try:
            m = await ca.wait_message(lambda m: m["body"] == f"prosody first {tag}", timeout=90,
                                      what="Prosody's message on Rampart")
        except AssertionError as e:
            raise AssertionError(f"{e}\nprosody log:\n{prosody.log()}\nrampart log:\n{alpha.log_text()}")
        assert m["from"].bare == p.jid
        st = alpha.cli("s2s", "status", "--json")
        assert '"direction":"in"' in st.stdout.replace(" ", "") and "sasl-external" in st.stdout, st.stdout
        ca.send_msg(m["from"].full, f"rampart answers {tag}")
        await cp.wait_message(lambda m: m["body"] == f"rampart answers {tag}", timeout=60,
                              what="Rampart's answer on Prosody")
    finally:
        await ca.logout()
        await cp.logout()
        ca.kill()
        cp.kill()


async def test_messages_both_ways_with_prosody(peers):
    alpha, prosody = peers
    a = alpha.add_user("alice")
    p = prosody.register("pat" + secrets.token_hex(3), "pw-" + secrets.token_hex(8))
    ca, cp = make_client(alpha, a, "pc"), make_client(prosody, p, "pc")
    await ca.login()
    await cp.login()
    try:
        await ca.go_online()
        cp.send_presence()
        tag = secrets.token_hex(4)
        ca.send_msg(p.jid, f"hello prosody {tag}")
        try:
            m = await cp.wait_message(lambda m: m["body"] == f"hello prosody {tag}", timeout=60,
                                      what="Rampart's message on Prosody")
        except AssertionError as e:
            raise AssertionError(f"{e}\nprosody log:\n{prosody.log()}\nrampart log:\n{alpha.log_text()}")
        assert m["from"].bare == a.jid
        cp.send_msg(m["from"].full, f"hello rampart {tag}")
        try:
            m2 = await ca.wait_message(lambda m: m["body"] == f"hello rampart {tag}", timeout=60,
                                       what="Prosody's answer on Rampart")
        except AssertionError as e:
            raise AssertionError(f"{e}\nprosody log:\n{prosody.log()}\nrampart log:\n{alpha.log_text()}")
        assert m2["from"].bare == p.jid
        st = alpha.cli("s2s", "status")
        assert "prosody.test" in st.stdout and "sasl-external" in st.stdout, st.stdout
    finally:
        await ca.logout()
        await cp.logout()
        ca.kill()
        cp.kill()
