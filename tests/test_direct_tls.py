"""Direct TLS on the c2s_tls port (XEP-0368), and the server certificate.

Covers: a full slixmpp login over direct TLS and a message exchanged with a
STARTTLS user; the stream features on a direct-TLS stream (no starttls,
mechanisms incl. -PLUS on TLS 1.3); SCRAM-SHA-256-PLUS over direct TLS; the
generated certificate staying the same across a restart; a plaintext
client on the TLS port getting nowhere.
"""

import socket

from rampart_harness import (
    HOST, NS_TLS, PlusRawXMPP, RawXMPP, assert_server_serves, mechanisms, scram_auth,
)


async def test_direct_tls_login_and_chat(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "tls", direct_tls=True)
    b = await clients(bob, "starttls")
    await a.go_online()
    await b.go_online()
    a.send_msg(f"{bob.jid}/starttls", "over direct tls")
    m = await b.wait_message(lambda m: m["body"] == "over direct tls")
    assert m["from"] == f"{alice.jid}/tls"
    b.send_msg(f"{alice.jid}/tls", "and back")
    m = await a.wait_message(lambda m: m["body"] == "and back")
    assert m["from"] == f"{bob.jid}/starttls"


def test_direct_tls_features(server):
    raw = RawXMPP(server, direct_tls=True)
    try:
        assert raw.sock.version() == "TLSv1.3"
        raw.open_stream()
        feats = raw.features()
        assert feats.find(f"{{{NS_TLS}}}starttls") is None, "starttls offered on a TLS stream"
        mechs = set(mechanisms(feats))
        assert {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} <= mechs, mechs
    finally:
        raw.close()


def test_direct_tls_scram_plus(server, new_user):
    u = new_user("dplus")
    raw = PlusRawXMPP(server, direct_tls=True)
    try:
        raw.open_stream()
        raw.features()
        res = scram_auth(raw, "SCRAM-SHA-256-PLUS", u.localpart, u.password,
                         gs2_flag="p=tls-exporter", cb_data=raw.tls_exporter())
        assert res.outcome == "success", res.condition
        assert res.server_signature_ok
    finally:
        raw.close()


async def test_plaintext_on_tls_port_is_not_served(server):
    s = socket.create_connection((HOST, server.c2s_tls_port), timeout=5)
    try:
        s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                  b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        s.settimeout(10)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
        assert b"<stream:features" not in data and b"mechanism" not in data, data[:500]
    finally:
        s.close()
    await assert_server_serves(server)


async def test_certificate_is_kept_across_restart(server, new_user, clients):
    before = server.cert_path.read_bytes()
    server.restart()
    assert server.cert_path.read_bytes() == before, "certificate regenerated on restart"
    # a client that trusts the old certificate still connects
    u = new_user("afterrestart")
    c = await clients(u, "r", direct_tls=True)
    await c.ping_server()
