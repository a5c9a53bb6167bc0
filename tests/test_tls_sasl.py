"""TLS and SASL (RFC 6120 §5-§6, RFC 5802/7677 SCRAM, RFC 9266 tls-exporter).

Covers: STARTTLS is mandatory on the c2s port (no mechanisms before TLS,
<auth> before TLS is refused with encryption-required and the stream closed
with policy-violation), the mechanisms offered after TLS, a login with every
mechanism, SCRAM-*-PLUS with the tls-exporter channel binding, the
authentication failures a user sees (wrong password and unknown account
indistinguishable), authzid abuse and malformed SASL input.
"""

import base64
import ssl

import pytest

from rampart_harness import (
    DOMAIN, NS_SASL, NS_TLS, PlusRawXMPP, RawXMPP, LoginFailed,
    assert_server_serves, mechanisms, sasl_condition, scram_auth,
)

# This module provokes many authentication failures on purpose; keep the
# per-IP throttle (tested in test_auth_throttle.py) out of the way.
RAMPART_LIMITS = {"auth_failures": 10000}

ALL_MECHS = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}


# ---------------------------------------------------------------- STARTTLS
def test_features_before_tls_offer_only_required_starttls(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream()
        feats = raw.features()
        starttls = feats.find(f"{{{NS_TLS}}}starttls")
        assert starttls is not None, f"no <starttls/> offered: {raw.describe()}"
        assert starttls.find(f"{{{NS_TLS}}}required") is not None, \
            "STARTTLS is not marked <required/>"
        assert mechanisms(feats) == [], f"SASL mechanisms offered before TLS: {mechanisms(feats)}"
        assert [c.tag for c in feats] == [f"{{{NS_TLS}}}starttls"], \
            f"features before TLS should only be starttls, got {[c.tag for c in feats]}"
    finally:
        raw.close()


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_auth_before_tls_is_refused_and_stream_closed(server, new_user, mech):
    u = new_user("pretls")
    raw = RawXMPP(server)
    try:
        raw.open_stream()
        raw.features()
        if mech == "PLAIN":
            payload = base64.b64encode(f"\0{u.localpart}\0{u.password}".encode()).decode()
        else:
            payload = base64.b64encode(f"n,,n={u.localpart},r=abcdefgh".encode()).decode()
        raw.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>{payload}</auth>")
        el = raw.next_element()
        assert el is not None, f"server closed without a SASL failure: {raw.describe()}"
        assert sasl_condition(el) == "encryption-required", \
            f"expected <failure><encryption-required/></failure>, got {el.tag} / {sasl_condition(el)}"
        raw.read_until_close(10)
        assert raw.closed, "server did not close the connection after refusing auth before TLS"
        assert raw.stream_error() == "policy-violation", raw.describe()
        assert not any(e.tag == f"{{{NS_SASL}}}success" for e in raw.elements)
    finally:
        raw.close()


def test_features_after_starttls(server):
    raw = RawXMPP(server)
    try:
        feats = raw.negotiate_tls()
        assert raw.sock.version() == "TLSv1.3", f"negotiated {raw.sock.version()}"
        assert feats.find(f"{{{NS_TLS}}}starttls") is None, "starttls offered again after TLS"
        assert set(mechanisms(feats)) == ALL_MECHS, f"mechanisms after TLS: {mechanisms(feats)}"
    finally:
        raw.close()


def test_plus_mechanisms_not_offered_on_tls12(server):
    try:
        raw = RawXMPP(server, tls_max_version=ssl.TLSVersion.TLSv1_2)
        feats = raw.negotiate_tls()
    except ssl.SSLError as e:
        pytest.skip(f"server does not accept TLS 1.2 at all ({e})")
    try:
        assert raw.sock.version() == "TLSv1.2"
        mechs = set(mechanisms(feats))
        assert not {m for m in mechs if m.endswith("-PLUS")}, \
            f"-PLUS offered on TLS 1.2, where tls-exporter is not safe without EMS: {mechs}"
        assert {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} <= mechs, mechs
    finally:
        raw.close()


def test_starttls_certificate_verifies_for_domain(server):
    """The generated certificate is valid for the configured domain (checked
    with host-name verification against the cert as the only trust anchor)."""
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        cert = raw.sock.getpeercert()
        sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        assert DOMAIN in sans, f"SAN of the server certificate: {sans}"
    finally:
        raw.close()


# ----------------------------------------------------- logins per mechanism
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_login_with_mechanism_via_slixmpp(server, new_user, clients, mech):
    u = new_user("mech")
    c = await clients(u, "m", sasl_mech=mech)
    assert c.plugin["feature_mechanisms"].mech.name == mech
    assert c.boundjid.bare == u.jid
    await c.ping_server()


async def test_default_slixmpp_login_picks_scram_sha_256(server, new_user, clients):
    """slixmpp cannot do tls-exporter (Python's ssl has no exporter), so with
    everything offered it cancels the -PLUS mechanisms, falls back to
    SCRAM-SHA-256, and the login works."""
    u = new_user("dflt")
    c = await clients(u)
    assert c.plugin["feature_mechanisms"].mech.name == "SCRAM-SHA-256"
    assert c.auth_failures == []


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
def test_scram_plus_with_tls_exporter(server, new_user, mech):
    u = new_user("plus")
    raw = PlusRawXMPP(server)
    try:
        feats = raw.negotiate_tls()
        assert raw.tls_version() == "TLSv1.3"
        assert mech in mechanisms(feats), mechanisms(feats)
        res = scram_auth(raw, mech, u.localpart, u.password,
                         gs2_flag="p=tls-exporter", cb_data=raw.tls_exporter())
        assert res.outcome == "success", f"{mech} failed: {res.condition}"
        assert res.server_signature_ok, "server signature (v=) did not verify"
        raw.open_stream()
        raw.features()
        jid = raw.bind("plus")
        assert jid == f"{u.jid}/plus"
    finally:
        raw.close()


def test_scram_plus_with_wrong_binding_data_fails(server, new_user):
    """A man in the middle terminating TLS would present different exporter
    data: the server must reject the proof."""
    u = new_user("pluswrong")
    raw = PlusRawXMPP(server)
    try:
        raw.negotiate_tls()
        bogus = bytes(b ^ 0xFF for b in raw.tls_exporter())
        res = scram_auth(raw, "SCRAM-SHA-256-PLUS", u.localpart, u.password,
                         gs2_flag="p=tls-exporter", cb_data=bogus)
        assert res.outcome == "failure", "login succeeded with forged channel binding data"
        assert res.condition == "not-authorized", res.condition
    finally:
        raw.close()


def test_scram_y_flag_when_server_offers_plus_fails(server, new_user):
    """RFC 5802 §6: gs2 flag 'y' says 'I support binding but the server did
    not offer it'; a server that offers -PLUS MUST fail this (downgrade)."""
    u = new_user("ydown")
    raw = RawXMPP(server)
    try:
        feats = raw.negotiate_tls()
        assert "SCRAM-SHA-256-PLUS" in mechanisms(feats)
        res = scram_auth(raw, "SCRAM-SHA-256", u.localpart, u.password, gs2_flag="y")
        assert res.outcome == "failure", "downgrade with gs2 flag 'y' was accepted"
    finally:
        raw.close()


def test_scram_plus_tls_unique_on_tls13_is_rejected(server, new_user):
    """tls-unique is undefined on TLS 1.3 (RFC 9266); the server must not
    accept it as a binding type."""
    u = new_user("tlsuniq")
    raw = PlusRawXMPP(server)
    try:
        raw.negotiate_tls()
        res = scram_auth(raw, "SCRAM-SHA-256-PLUS", u.localpart, u.password,
                         gs2_flag="p=tls-unique", cb_data=b"\0" * 12)
        assert res.outcome == "failure", "login with p=tls-unique on TLS 1.3 succeeded"
    finally:
        raw.close()


def test_scram_server_signature_verifies(server, new_user):
    u = new_user("sig")
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        res = scram_auth(raw, "SCRAM-SHA-256", u.localpart, u.password)
        assert res.outcome == "success", res.condition
        assert res.server_signature_ok, "SCRAM server signature in <success/> is wrong or missing"
    finally:
        raw.close()


# ---------------------------------------------------------- auth failures
@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_wrong_password_is_not_authorized(server, new_user, clients, mech):
    u = new_user("wrongpw")
    c = clients.new(u, "x", sasl_mech=mech)
    c.password = u.password + "-wrong"
    with pytest.raises(LoginFailed):
        await c.login()
    assert c.auth_failures == ["not-authorized"], c.auth_failures
    assert not c.authenticated


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
async def test_unknown_account_is_not_authorized(server, clients, mech):
    ghost = server.unknown_user()
    c = clients.new(ghost, "x", sasl_mech=mech)
    with pytest.raises(LoginFailed):
        await c.login()
    assert c.auth_failures == ["not-authorized"], c.auth_failures


def test_scram_unknown_account_looks_like_wrong_password(server, new_user):
    """The server must not reveal which accounts exist: for an unknown
    account it answers the client-first message with a normal challenge
    (same iteration count, a salt) and fails only at the proof."""
    real = new_user("enum")
    ghost = server.unknown_user()
    results = {}
    for who, name in (("real", real.localpart), ("ghost", ghost.localpart)):
        raw = RawXMPP(server)
        try:
            raw.negotiate_tls()
            res = scram_auth(raw, "SCRAM-SHA-256", name, "definitely-wrong-password")
            results[who] = res
        finally:
            raw.close()
    for who, res in results.items():
        assert res.server_first is not None, \
            f"{who} account: failed before the challenge ({res.condition}) -> accounts can be enumerated"
        assert res.outcome == "failure" and res.condition == "not-authorized", (who, res)

    def iters(res):
        return dict(kv.split("=", 1) for kv in res.server_first.decode().split(","))["i"]

    assert iters(results["real"]) == iters(results["ghost"]), \
        "iteration count differs between existing and unknown accounts"


def test_authzid_for_another_user_is_refused(server, new_user):
    alice, bob = new_user("az"), new_user("az")
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        el = raw.auth_plain(alice.localpart, alice.password, authzid=bob.jid)
        assert el.tag != f"{{{NS_SASL}}}success", "alice could log in as bob via authzid"
        assert sasl_condition(el) in ("invalid-authzid", "not-authorized"), sasl_condition(el)
    finally:
        raw.close()


def test_authzid_equal_to_own_jid_is_accepted(server, new_user):
    u = new_user("azself")
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        el = raw.auth_plain(u.localpart, u.password, authzid=u.jid)
        assert el.tag == f"{{{NS_SASL}}}success", f"authzid == own bare JID refused: {sasl_condition(el)}"
    finally:
        raw.close()


def test_unknown_mechanism_gets_invalid_mechanism(server):
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        el = raw.auth("X-NOT-A-MECHANISM", b"whatever")
        assert sasl_condition(el) == "invalid-mechanism", sasl_condition(el)
    finally:
        raw.close()


def test_bad_base64_gets_incorrect_encoding(server):
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>%%%not*base64%%%</auth>")
        el = raw.next_element()
        assert el is not None, raw.describe()
        assert sasl_condition(el) == "incorrect-encoding", sasl_condition(el)
    finally:
        raw.close()


async def test_retry_after_failure_on_same_stream(server, new_user):
    """RFC 6120 §6.4.5: the client may retry on the same stream."""
    u = new_user("retry")
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        el = raw.auth_plain(u.localpart, "nope")
        assert sasl_condition(el) == "not-authorized"
        el = raw.auth_plain(u.localpart, u.password)
        assert el.tag == f"{{{NS_SASL}}}success", f"second attempt failed: {sasl_condition(el)}"
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_stanza_before_authentication_is_not_routed(server, new_user, clients):
    """Stanzas sent after TLS but before SASL must not reach anyone
    (RFC 6120 §6.4.1 / stream error not-authorized)."""
    victim = new_user("victim")
    vc = await clients(victim, "v")
    await vc.go_online()
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.send(f"<message to='{victim.jid}' type='chat'><body>unauthenticated</body></message>")
        raw.read_until_close(5)
        assert raw.stream_error() in ("not-authorized", "policy-violation"), raw.describe()
    finally:
        raw.close()
    await vc.messages.assert_none(lambda m: m["body"] == "unauthenticated", within=1.0,
                                  what="a message from an unauthenticated stream")


async def test_wrong_stream_to_is_host_unknown(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream(to="not-served.example")
        raw.read_until_close(10)
        assert raw.stream_error() == "host-unknown", raw.describe()
    finally:
        raw.close()
    await assert_server_serves(server)
