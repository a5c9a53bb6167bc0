"""Federation against hostile peers (raw sockets), and direct TLS (XEP-0368) between two
Rampart servers. alpha.test allows beta.test and gamma.test; the raw peer plays beta.test
(or pretends to), with certificates from the test CA unless stated otherwise.

* a certificate from an unknown CA is refused (not authenticated) and logged;
* no certificate, or one for another domain: no authentication (stream error
  `not-authorized`) and a security event;
* a domain not on the allow-list: stream error `policy-violation`;
* a dialback spoof (a `db:result` key instead of a certificate) is refused;
* after authentication, a stanza whose `from` is outside the authenticated domain ends the
  stream with `invalid-from` and is not delivered; `to` a domain not served: `host-unknown`;
* oversized and malformed stanzas end the stream with the stream error the framer names;
* nothing before TLS: `<auth/>` on the plaintext stream is refused;
* the server keeps serving throughout.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rampart_harness import (
    archive_search, assert_server_serves, events_list, free_ports, make_client, send_msg_id,
    stanza_error, stanza_error_text,
)
from s2s_helpers import CertAuthority, RawS2S, route_to, s2s_server

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s_hostile"


@pytest.fixture(scope="module")
def env():
    ca = CertAuthority(WORK / "ca")
    rogue = CertAuthority(WORK / "rogue", name="Rogue CA")
    dead_port = free_ports(1)[0]  # nothing listens there: dead.test never answers
    alpha = s2s_server(WORK / "alpha", ca, "alpha.test", ["beta.test", "gamma.test", "dead.test"],
                       limits={"max_stanza_bytes": 4096},
                       extra={"bounce_after_secs": 3,
                              "routes": {'"dead.test"': f"127.0.0.1:{dead_port}"}})
    gamma = s2s_server(WORK / "gamma", ca, "gamma.test", ["alpha.test"])
    route_to(alpha, gamma, direct_tls=True)
    route_to(gamma, alpha)
    alpha.start()
    gamma.start()
    try:
        yield {"ca": ca, "rogue": rogue, "alpha": alpha, "gamma": gamma,
               "beta_cert": ca.issue("beta.test"), "gamma_cert": ca.issue("gamma.test"),
               "delta_cert": ca.issue("delta.test"), "rogue_beta": rogue.issue("beta.test")}
    finally:
        alpha.stop()
        gamma.stop()


def raw(env, from_domain="beta.test") -> RawS2S:
    return RawS2S(env["alpha"].s2s_port, from_domain, "alpha.test")


def test_certificate_from_unknown_ca_is_refused(env):
    alpha = env["alpha"]
    mark = alpha.log_size()
    r = raw(env)
    try:
        feats = r.starttls(env["rogue_beta"], env["ca"].path)
        assert "EXTERNAL" not in feats, feats
        more = r.read_until("</stream:features>", timeout=5)
        assert "<mechanism>EXTERNAL" not in more and r.closed, more
    finally:
        r.close()
    log = alpha.log_text(since=mark)
    assert "does not lead to a trusted authority" in log or "TLS handshake failed" in log, log
    alpha.assert_alive()


def test_no_certificate_is_not_authenticated(env):
    r = raw(env)
    try:
        out = r.starttls(None, env["ca"].path)
        assert "not-authorized" in out and "EXTERNAL" not in out, out
    finally:
        r.close()


def test_certificate_for_another_domain_is_not_authenticated(env):
    alpha = env["alpha"]
    r = raw(env)  # claims beta.test
    try:
        out = r.starttls(env["gamma_cert"], env["ca"].path)
        assert "not-authorized" in out and "EXTERNAL" not in out, out
    finally:
        r.close()
    assert any(e["rule"] == "s2s.certificate" and e["account"] == "beta.test"
               for e in events_list(alpha)), "no security event for the impostor"


def test_dialback_spoof_is_refused(env):
    """Claiming beta.test with a dialback key instead of a certificate gets nowhere:
    dialback is not accepted, and nothing is delivered."""
    r = raw(env)
    try:
        out = r.starttls(None, env["ca"].path)
        assert "not-authorized" in out and "dialback" not in out, out
    finally:
        r.close()
    # With a valid certificate, a db:result in place of SASL is refused as well.
    r = raw(env)
    try:
        feats = r.starttls(env["beta_cert"], env["ca"].path)
        assert "EXTERNAL" in feats, feats
        r.send("<db:result xmlns:db='jabber:server:dialback' from='beta.test' to='alpha.test'>"
               "deadbeef</db:result>")
        out = r.read_until("</stream:stream>")
        assert "not-authorized" in out, out
    finally:
        r.close()


def test_domain_not_on_the_allow_list_is_refused(env):
    r = raw(env, "delta.test")
    try:
        out = r.starttls(env["delta_cert"], env["ca"].path)
        assert "policy-violation" in out and "EXTERNAL" not in out, out
    finally:
        r.close()


async def test_from_outside_the_authenticated_domain_is_rejected(env):
    alpha = env["alpha"]
    victim = alpha.add_user("victim")
    c = make_client(alpha, victim, "pc")
    await c.login()
    try:
        await c.go_online()
        r = raw(env)
        try:
            r.authenticate(env["beta_cert"], env["ca"].path)
            tag = secrets.token_hex(4)
            r.send(f"<message from='ceo@evil.test/x' to='{victim.jid}' type='chat' id='{tag}'>"
                   f"<body>spoofed {tag}</body></message>")
            out = r.read_until("</stream:stream>", timeout=15)
            assert "invalid-from" in out, out
        finally:
            r.close()
        await c.messages.assert_none(lambda m: "spoofed" in (m["body"] or ""), within=1.5,
                                     what="the spoofed message")
        # The honest form of the same stanza is delivered.
        r = raw(env)
        try:
            r.authenticate(env["beta_cert"], env["ca"].path)
            r.send(f"<message from='friend@beta.test/x' to='{victim.jid}' type='chat'>"
                   f"<body>honest {tag}</body></message>")
            m = await c.wait_message(lambda m: m["body"] == f"honest {tag}", timeout=20)
            assert m["from"].bare == "friend@beta.test"
        finally:
            r.close()
    finally:
        await c.logout()
        c.kill()


def test_stanza_to_a_domain_not_served_is_refused(env):
    r = raw(env)
    try:
        r.authenticate(env["beta_cert"], env["ca"].path)
        r.send("<message from='a@beta.test' to='b@elsewhere.test'><body>relay?</body></message>")
        out = r.read_until("</stream:stream>")
        assert "host-unknown" in out, out
    finally:
        r.close()


def test_oversized_stanza_ends_the_stream(env):
    r = raw(env)
    try:
        r.authenticate(env["beta_cert"], env["ca"].path)
        r.send("<message from='a@beta.test' to='x@alpha.test'><body>" + "A" * 20000 + "</body></message>")
        out = r.read_until("</stream:stream>")
        assert "<stream:error>" in out, out
    finally:
        r.close()
    env["alpha"].assert_alive()


def test_malformed_stream_ends_the_stream(env):
    r = raw(env)
    try:
        r.authenticate(env["beta_cert"], env["ca"].path)
        r.send("<message from='a@beta.test' to='x@alpha.test'><body>&bogus;</body></message>")
        out = r.read_until("</stream:stream>")
        assert "not-well-formed" in out or "<stream:error>" in out, out
    finally:
        r.close()


def test_nothing_before_tls(env):
    r = raw(env)
    try:
        r.header()
        feats = r.read_until("</stream:features>")
        assert "starttls" in feats and "mechanism" not in feats, feats
        r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        out = r.read_until("</stream:stream>")
        assert "policy-violation" in out, out
    finally:
        r.close()


async def test_direct_tls_route(env):
    """alpha reaches gamma over direct TLS (XEP-0368 route `tls:HOST:PORT`)."""
    alpha, gamma = env["alpha"], env["gamma"]
    a, g = alpha.add_user("dt"), gamma.add_user("dt")
    ca_, cg = make_client(alpha, a, "pc"), make_client(gamma, g, "pc")
    await ca_.login()
    await cg.login()
    try:
        await cg.go_online()
        tag = secrets.token_hex(4)
        ca_.send_msg(g.jid, f"over direct tls {tag}")
        await cg.wait_message(lambda m: m["body"] == f"over direct tls {tag}", timeout=45)
    finally:
        await ca_.logout()
        await cg.logout()
        ca_.kill()
        cg.kill()


async def test_unreachable_peer_bounces_after_the_configured_time(env):
    """A message for a domain that never answers waits in the queue, then comes back with
    `remote-server-timeout` (bounce_after_secs = 3 here), and the bounce is archived."""
    alpha = env["alpha"]
    a = alpha.add_user("lonely")
    c = make_client(alpha, a, "pc")
    await c.login()
    try:
        await c.go_online()
        mid = send_msg_id(c, "nobody@dead.test", "anyone there?")
        err = await c.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=60,
                                   what="the remote-server-timeout bounce")
        assert stanza_error(err)[0] == "remote-server-timeout", err
        assert "dead.test" in stanza_error_text(err)
    finally:
        await c.logout()
        c.kill()
    recs = archive_search(alpha, None, "--verdict", "bounced", "--from", a.jid)
    assert any(r["remote_domain"] == "dead.test" for r in recs), recs


async def test_server_still_serves(env):
    await assert_server_serves(env["alpha"])
