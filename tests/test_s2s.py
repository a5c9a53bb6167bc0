"""Federation (issue #8): two Rampart servers on loopback, alpha.test and beta.test, with
certificates from a test CA made here, static routes, and allow-lists naming each other.

What a user and an operator see:
* messages cross in both directions, authenticated by certificate (SASL EXTERNAL);
* presence subscriptions work across: request, approval, roster push, presence;
* both archives record the traffic with its direction and the remote domain;
* the allow-list holds in both directions (outbound: policy-violation to the sender and a
  security event; inbound: the peer's stream is refused);
* threat defense runs on what arrives from the other side (beta runs without it): EICAR
  and a worm blast from a remote account are stopped at alpha's border, and the remote
  sender gets the error;
* end-to-end encrypted payloads (OMEMO) are refused at the border with a clear text;
* the outbound queue is durable: messages for a peer that is down survive a restart of
  the sender and arrive once the peer is back;
* `rampart s2s status` shows links, TLS, authentication and queue depth.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from rampart_harness import (
    archive_search, events_list, make_client, roster_items, send_msg_id, stanza_error,
    stanza_error_text,
)
from s2s_helpers import CertAuthority, online, route_to, s2s_server, wait_for

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
NS_OMEMO = "eu.siacs.conversations.axolotl"


@pytest.fixture(scope="module")
def fed():
    """(alpha, beta): two federating servers."""
    ca = CertAuthority(WORK / "ca")
    alpha = s2s_server(WORK / "alpha", ca, "alpha.test", ["beta.test"],
                       extra_toml="[muc]\nallow_external = true\n")
    # beta runs without threat defense, like a partner's server might: what its users send
    # reaches alpha unjudged, and alpha's border must stop it.
    beta = s2s_server(WORK / "beta", ca, "beta.test", ["alpha.test"], guard={"enabled": False})
    route_to(alpha, beta)
    route_to(beta, alpha)
    alpha.start()
    beta.start()
    try:
        yield alpha, beta
    finally:
        alpha.stop()
        beta.stop()


def s2s_status(server) -> dict[str, dict]:
    r = server.cli("s2s", "status", "--json")
    assert r.returncode == 0, f"`rampart s2s status --json` exited {r.returncode}: {r.stderr}"
    return {d["domain"]: d for d in map(json.loads, r.stdout.splitlines())}


async def test_messages_cross_both_ways(fed):
    alpha, beta = fed
    a, b = alpha.add_user("alice"), beta.add_user("bob")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        t = secrets.token_hex(4)
        ca.send_msg(b.jid, f"hello bob {t}")
        m = await cb.wait_message(lambda m: m["body"] == f"hello bob {t}", timeout=45,
                                  what="alice's message on beta")
        assert m["from"].bare == a.jid and m["from"].resource == "pc"
        cb.send_msg(m["from"].full, f"hello alice {t}")
        m2 = await ca.wait_message(lambda m: m["body"] == f"hello alice {t}", timeout=45,
                                   what="bob's answer on alpha")
        assert m2["from"].bare == b.jid


async def test_carbons_of_messages_sent_across(fed):
    """XEP-0280: what one resource sends to a remote contact is copied to its sibling."""
    alpha, beta = fed
    a, b = alpha.add_user("carb"), beta.add_user("carb")
    ns = "urn:xmpp:carbons:2"
    async with online(alpha, a, "phone") as phone, online(alpha, a, "desk") as desk, \
            online(beta, b) as cb:
        for c in (phone, desk):
            r = await c.iq("set", f"<enable xmlns='{ns}'/>")
            assert r["type"] == "result", r
        tag = secrets.token_hex(4)
        phone.send_msg(b.jid, f"carbon {tag}")
        await cb.wait_message(lambda m: m["body"] == f"carbon {tag}", timeout=45)
        copy = await desk.wait_message(
            lambda m: m.xml.find(f"{{{ns}}}sent") is not None and f"carbon {tag}" in str(m),
            timeout=20, what="the <sent/> carbon on the sibling resource")
        assert copy["from"].bare == a.jid


async def test_archives_record_direction_and_remote_domain(fed):
    alpha, beta = fed
    a, b = alpha.add_user("arch"), beta.add_user("arch")
    t = secrets.token_hex(5)
    async with online(alpha, a) as ca, online(beta, b) as cb:
        ca.send_msg(b.jid, f"archived out {t}")
        await cb.wait_message(lambda m: m["body"] == f"archived out {t}", timeout=45)
    out = [r for r in archive_search(alpha, t) if r.get("body") == f"archived out {t}"]
    assert out and out[0]["direction"] == "outbound" and out[0]["remote_domain"] == "beta.test", out
    inc = [r for r in archive_search(beta, t) if r.get("body") == f"archived out {t}"]
    assert inc and inc[0]["direction"] == "inbound" and inc[0]["remote_domain"] == "alpha.test", inc


async def test_presence_subscription_across(fed):
    alpha, beta = fed
    a, b = alpha.add_user("sub"), beta.add_user("sub")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        await ca.roster_get()  # roster pushes go to resources that asked for the roster
        ca.send_presence(pto=b.jid, ptype="subscribe")
        req = await cb.wait_presence(lambda p: p["type"] == "subscribe", timeout=45,
                                     what="the subscription request on beta")
        assert req["from"].bare == a.jid
        cb.send_presence(pto=a.jid, ptype="subscribed")
        push = await ca.roster_pushes.wait_for(
            lambda iq: b.jid in roster_items(iq)
            and roster_items(iq)[b.jid].get("subscription") in ("to", "both"),
            timeout=45, what="a roster push with subscription 'to'")
        assert push is not None
        p = await ca.wait_presence(lambda p: p["from"].bare == b.jid and p["type"] == "available",
                                   timeout=45, what="bob's presence on alpha")
        assert p["from"].bare == b.jid
        # Later logins learn bob's presence by a probe that crosses the border (RFC 6121 §4.3).
        async with online(alpha, a, "phone") as ca2:
            await ca2.wait_presence(lambda p: p["from"].bare == b.jid and p["type"] == "available",
                                    timeout=45, what="bob's presence, answering alice's probe")


async def test_room_join_across(fed):
    """bob@beta.test enters a room on conference.alpha.test (reached through alpha's route,
    the link authenticated by alpha's certificate for the subdomain) and chats with alice."""
    alpha, beta = fed
    a, b = alpha.add_user("owner"), beta.add_user("guest")
    room = f"fed-{secrets.token_hex(3)}@conference.alpha.test"
    plugins = ("xep_0004", "xep_0030", "xep_0045")
    ca, cb = make_client(alpha, a, "pc"), make_client(beta, b, "pc")
    for c in (ca, cb):
        for p in plugins:
            c.register_plugin(p)
    await ca.login()
    await cb.login()
    try:
        await ca.go_online()
        await cb.go_online()
        await ca.plugin["xep_0045"].join_muc_wait(room, "alice", maxstanzas=0, timeout=20)
        form = ca.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
        await ca.plugin["xep_0045"].set_room_config(room, form)
        await cb.plugin["xep_0045"].join_muc_wait(room, "bob", maxstanzas=0, timeout=45)
        tag = secrets.token_hex(4)
        m = cb.make_message(mto=room, mbody=f"hi room {tag}", mtype="groupchat")
        m.send()
        got = await ca.wait_message(lambda m: m["type"] == "groupchat" and m["body"] == f"hi room {tag}",
                                    timeout=45, what="bob's groupchat message on alpha")
        assert got["from"].resource == "bob"
        m = ca.make_message(mto=room, mbody=f"welcome {tag}", mtype="groupchat")
        m.send()
        await cb.wait_message(lambda m: m["type"] == "groupchat" and m["body"] == f"welcome {tag}",
                              timeout=45, what="alice's groupchat message on beta")
    finally:
        await ca.logout()
        await cb.logout()
        ca.kill()
        cb.kill()


async def test_allow_list_outbound(fed):
    alpha, _ = fed
    a = alpha.add_user("out")
    async with online(alpha, a) as ca:
        mid = send_msg_id(ca, "someone@gamma.test", "may I?")
        err = await ca.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=20)
        assert stanza_error(err)[0] == "policy-violation"
        assert "gamma.test" in stanza_error_text(err)
    ev = [e for e in events_list(alpha) if e["rule"] == "s2s.allow-list" and e["account"] == a.jid]
    assert ev, "no security event for the refused federation attempt"


async def test_e2ee_refused_at_the_border(fed):
    alpha, beta = fed
    a, b = alpha.add_user("omemo"), beta.add_user("omemo")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        msg = ca.make_message(mto=b.jid, mbody="[This message is OMEMO encrypted]", mtype="chat")
        mid = "m-" + secrets.token_hex(5)
        msg["id"] = mid
        import xml.etree.ElementTree as ET
        enc = ET.SubElement(msg.xml, f"{{{NS_OMEMO}}}encrypted")
        ET.SubElement(enc, f"{{{NS_OMEMO}}}payload").text = "AAAA"
        msg.send()
        err = await ca.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=20)
        assert stanza_error(err)[0] == "policy-violation"
        assert "OMEMO" in stanza_error_text(err)
        await cb.messages.assert_none(lambda m: m["id"] == mid, within=2, what="the encrypted message")


async def test_eicar_from_the_remote_side_is_stopped(fed):
    alpha, beta = fed
    a, b = alpha.add_user("victim"), beta.add_user("sender")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        mid = send_msg_id(cb, a.jid, f"look {EICAR}")
        err = await cb.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=45,
                                    what="the error for the EICAR message, from alpha")
        assert stanza_error(err)[0] == "policy-violation"
        await ca.messages.assert_none(lambda m: "EICAR" in (m["body"] or ""), within=2,
                                      what="the EICAR message")
    recs = [r for r in archive_search(alpha, None, "--verdict", "blocked", "--with", b.jid)]
    assert any(r["direction"] == "inbound" and r["remote_domain"] == "beta.test" for r in recs), recs


async def test_worm_blast_from_remote_account_is_stopped(fed):
    alpha, beta = fed
    victims = [alpha.add_user("v") for _ in range(5)]
    worm = beta.add_user("worm")
    link = f"http://worm-{secrets.token_hex(4)}.example.net/pic.exe"
    got = 0
    async with online(beta, worm) as cw:
        ids = []
        for v in victims:
            ids.append(send_msg_id(cw, v.jid, f"see {link}"))
            await asyncio.sleep(0.3)
        errs = await cw.messages.collect(1, lambda m: m["type"] == "error" and m["id"] in ids,
                                         timeout=60, what="an error for the blast")
        assert stanza_error(errs[0])[0] == "policy-violation"
    ev = wait_for(lambda: [e for e in events_list(alpha) if e["account"] == worm.jid],
                  what="a security event about the remote worm account")
    assert ev


async def test_s2s_status_shows_links(fed):
    alpha, beta = fed
    a, b = alpha.add_user("st"), beta.add_user("st")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        ca.send_msg(b.jid, "status check")
        await cb.wait_message(lambda m: m["body"] == "status check", timeout=45)
    st = wait_for(lambda: s2s_status(alpha).get("beta.test"), what="beta.test in s2s status")
    out = [l for l in st["links"] if l["direction"] == "out"]
    assert out and out[0]["state"] == "up" and out[0]["auth"] == "sasl-external", st
    assert "TLS" in (out[0]["tls"] or ""), st
    st_b = wait_for(lambda: s2s_status(beta).get("alpha.test"), what="alpha.test in beta's status")
    assert any(l["direction"] == "in" and l["state"] == "up" for l in st_b["links"]), st_b
    text = alpha.cli("s2s", "status")
    assert text.returncode == 0 and "beta.test" in text.stdout, text.stdout


async def test_queue_survives_sender_restart_while_peer_down(fed):
    alpha, beta = fed
    a, b = alpha.add_user("q"), beta.add_user("q")
    beta.stop()
    try:
        async with online(alpha, a) as ca:
            for i in range(3):
                ca.send_msg(b.jid, f"queued {i}")
            await ca.sync()
        wait_for(lambda: s2s_status(alpha).get("beta.test", {}).get("queued") == 3,
                 what="3 stanzas queued for beta.test")
        alpha.restart()
        assert s2s_status(alpha)["beta.test"]["queued"] == 3
    finally:
        beta.start()
    async with online(beta, b) as cb:
        got = await cb.messages.collect(3, lambda m: m["body"].startswith("queued "), timeout=60,
                                        what="the queued messages")
        assert sorted(m["body"] for m in got) == ["queued 0", "queued 1", "queued 2"]
    wait_for(lambda: s2s_status(alpha).get("beta.test", {}).get("queued", 0) == 0,
             what="the queue for beta.test to empty")
