"""Server dialback (XEP-0220) as the per-domain fallback: legacy.test runs with its own
self-signed certificate (no CA vouches for it); alpha.test (certificate from the test CA)
lists legacy.test under `[s2s] dialback`, and legacy.test lists alpha.test.

* messages cross both ways; `rampart s2s status` says the links were authenticated by
  dialback;
* an impostor claiming legacy.test with a made-up key is refused (legacy's server does
  not confirm the key) and a security event is recorded;
* a domain not listed for dialback still needs a valid certificate (see
  test_s2s_hostile.py).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from rampart_harness import HOST, RampartServer, events_list, make_client
from s2s_helpers import CertAuthority, RawS2S, route_to, s2s_server

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s_dialback"


@pytest.fixture(scope="module")
def pair():
    ca = CertAuthority(WORK / "ca")
    alpha = s2s_server(WORK / "alpha", ca, "alpha.test", ["legacy.test"],
                       extra={"dialback": ["legacy.test"]})
    # No [tls]: legacy.test generates a self-signed certificate on first start.
    legacy = RampartServer(WORK / "legacy", domain="legacy.test",
                           s2s={"enabled": True, "allow": ["alpha.test"], "dialback": ["alpha.test"],
                                "public_roots": False, "ca_file": str(ca.path),
                                "connect_timeout_secs": 10, "retry_max_secs": 2})
    route_to(alpha, legacy)
    route_to(legacy, alpha)
    alpha.start()
    legacy.start()
    try:
        yield alpha, legacy, ca
    finally:
        alpha.stop()
        legacy.stop()


def status(server) -> dict:
    r = server.cli("s2s", "status", "--json")
    assert r.returncode == 0, r.stderr
    return {d["domain"]: d for d in map(json.loads, r.stdout.splitlines())}


async def test_messages_cross_with_dialback(pair):
    alpha, legacy, _ = pair
    a, l = alpha.add_user("al"), legacy.add_user("le")
    ca, cl = make_client(alpha, a, "pc"), make_client(legacy, l, "pc")
    await ca.login()
    await cl.login()
    try:
        await ca.go_online()
        await cl.go_online()
        tag = secrets.token_hex(4)
        ca.send_msg(l.jid, f"to legacy {tag}")
        await cl.wait_message(lambda m: m["body"] == f"to legacy {tag}", timeout=60,
                              what="alpha's message on legacy")
        cl.send_msg(a.jid, f"to alpha {tag}")
        await ca.wait_message(lambda m: m["body"] == f"to alpha {tag}", timeout=60,
                              what="legacy's message on alpha")
        st = status(alpha)["legacy.test"]["links"]
        assert any(x["auth"] == "dialback" and x["state"] == "up" for x in st), st
    finally:
        await ca.logout()
        await cl.logout()
        ca.kill()
        cl.kill()


def test_dialback_with_a_forged_key_is_refused(pair):
    alpha, _, ca = pair
    r = RawS2S(alpha.s2s_port, "legacy.test", "alpha.test")
    try:
        feats = r.starttls(None, ca.path)
        assert "dialback" in feats, feats
        r.send("<db:result xmlns:db='jabber:server:dialback' from='legacy.test' to='alpha.test'>"
               + "00" * 32 + "</db:result>")
        out = r.read_until("</stream:stream>", timeout=30)
        assert "type='invalid'" in out or 'type="invalid"' in out, out
        assert "not-authorized" in out, out
    finally:
        r.close()
    assert any(e["rule"] == "s2s.dialback" and e["account"] == "legacy.test" for e in events_list(alpha))
