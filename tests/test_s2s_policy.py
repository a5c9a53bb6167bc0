"""Federation border policy (issue #8): what may cross, per remote domain and direction,
per local account, and what a remote server may ask this server itself.

Three Rampart servers on loopback with certificates from a test CA made here:
* alpha.test, the server under test. It allows beta.test with rules: inbound messages,
  rooms and IQs (no presence, no file links); outbound messages, presence, file links and
  IQs (no rooms). gamma.test is not on its allow-list, but the accounts of the group
  `execs` may federate with any domain; `intern@alpha.test` may not federate at all.
* beta.test and gamma.test allow alpha.test and everything.

What a user and an operator see:
* traffic of an allowed kind crosses; a refused kind gets `policy-violation` with a text
  naming the rule, in both directions (the remote sender gets the stanza error back), a
  security event, and for messages an archive record with the verdict `blocked`;
* a room join towards a partner where rooms may not go out is answered with an error
  presence; the partner's users may still take part in alpha's rooms (inbound rooms);
* an exempt account talks with a domain not on the allow-list, both ways; others get
  `policy-violation`, and so does the remote sender writing to them;
* a barred account cannot federate in either direction;
* a remote user's ping, disco#info and version to alpha.test are answered; other IQs to
  the server still get `service-unavailable`.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rampart_harness import (
    User, archive_search, archive_verdict, events_list, make_client, send_msg_id, stanza_error,
    stanza_error_text,
)
from s2s_helpers import CertAuthority, online, route_to, s2s_server, wait_for

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s_policy"
NS_OOB = "jabber:x:oob"
NS_MUC = "http://jabber.org/protocol/muc"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"


@pytest.fixture(scope="module")
def fed():
    """(alpha, beta, gamma, boss, intern): alpha's policy under test."""
    ca = CertAuthority(WORK / "ca")
    boss = User(f"boss{secrets.token_hex(2)}", secrets.token_hex(8), "alpha.test")
    intern = User(f"intern{secrets.token_hex(2)}", secrets.token_hex(8), "alpha.test")
    policy = {
        "allow_users": ["group:execs"],
        "deny_users": [intern.jid],
        "groups": {"execs": [boss.jid]},
        "domains": {
            '"beta.test"': {"inbound": ["messages", "rooms", "iqs"],
                            "outbound": ["messages", "presence", "files", "iqs"]},
        },
    }
    alpha = s2s_server(WORK / "alpha", ca, "alpha.test", ["beta.test"], extra=policy,
                       extra_toml="[muc]\nallow_external = true\n")
    beta = s2s_server(WORK / "beta", ca, "beta.test", ["alpha.test"], guard={"enabled": False})
    gamma = s2s_server(WORK / "gamma", ca, "gamma.test", ["alpha.test"], guard={"enabled": False})
    for s, peers in ((alpha, (beta, gamma)), (beta, (alpha,)), (gamma, (alpha,))):
        for p in peers:
            route_to(s, p)
    for s in (alpha, beta, gamma):
        s.start()
    for u in (boss, intern):
        r = alpha.cli("user", "add", u.jid, "--password", u.password)
        assert r.returncode == 0, r.stderr
    try:
        yield alpha, beta, gamma, boss, intern
    finally:
        for s in (alpha, beta, gamma):
            s.stop()


def send_file_link(client, to: str, url: str) -> str:
    """A file shared the way upload clients do it: the URL as the body and in XEP-0066."""
    msg = client.make_message(mto=to, mbody=url, mtype="chat")
    mid = "f-" + secrets.token_hex(6)
    msg["id"] = mid
    x = ET.SubElement(msg.xml, f"{{{NS_OOB}}}x")
    ET.SubElement(x, f"{{{NS_OOB}}}url").text = url
    msg.send()
    return mid


async def expect_refusal(client, mid: str, *needles: str, timeout: float = 45):
    err = await client.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=timeout,
                                    what=f"the error for {mid}")
    assert stanza_error(err)[0] == "policy-violation", err
    text = stanza_error_text(err)
    for n in needles:
        assert n in text, f"{n!r} not in the error text {text!r}"
    return text


async def test_allowed_kinds_cross(fed):
    """Messages both ways; file links and presence subscriptions go out."""
    alpha, beta, *_ = fed
    a, b = alpha.add_user("kinds"), beta.add_user("kinds")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        t = secrets.token_hex(4)
        ca.send_msg(b.jid, f"out {t}")
        m = await cb.wait_message(lambda m: m["body"] == f"out {t}", timeout=45)
        cb.send_msg(m["from"].full, f"in {t}")
        await ca.wait_message(lambda m: m["body"] == f"in {t}", timeout=45)
        url = f"https://files.alpha.test/upload/{t}/report.pdf"
        send_file_link(ca, b.jid, url)
        f = await cb.wait_message(lambda m: m["body"] == url, timeout=45, what="the file link on beta")
        assert f.xml.find(f"{{{NS_OOB}}}x") is not None
        ca.send_presence(pto=b.jid, ptype="subscribe")
        req = await cb.wait_presence(lambda p: p["type"] == "subscribe", timeout=45,
                                     what="alice's subscription request on beta")
        assert req["from"].bare == a.jid


async def test_inbound_file_link_refused(fed):
    """beta may not send file links in: the sender gets policy-violation naming the rule,
    alice gets nothing, alpha records a security event and a blocked archive entry."""
    alpha, beta, *_ = fed
    a, b = alpha.add_user("nofile"), beta.add_user("filer")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        url = f"https://files.beta.test/{secrets.token_hex(4)}/payload.zip"
        mid = send_file_link(cb, a.jid, url)
        await expect_refusal(cb, mid, "files from beta.test", 's2s.domains."beta.test"')
        await ca.messages.assert_none(lambda m: m["body"] == url, within=2, what="the file link")
        # Plain messages from the same sender still arrive.
        t = secrets.token_hex(4)
        cb.send_msg(a.jid, f"just text {t}")
        await ca.wait_message(lambda m: m["body"] == f"just text {t}", timeout=45)
    ev = wait_for(lambda: [e for e in events_list(alpha) if e["rule"] == "s2s.rules" and e["account"] == b.jid],
                  what="a security event for the refused file link")
    assert "files from beta.test" in ev[0]["reason"]
    recs = wait_for(lambda: [r for r in archive_search(alpha, None, "--verdict", "blocked", "--with", b.jid)],
                    what="the blocked file link in alpha's archive")
    verdict, rule, _ = archive_verdict(recs[0])
    assert (verdict, rule) == ("blocked", "s2s.rules"), recs[0]
    assert recs[0]["direction"] == "inbound" and recs[0]["remote_domain"] == "beta.test", recs[0]


async def test_inbound_presence_refused(fed):
    """Presence may not come in from beta: a subscription request is refused back."""
    alpha, beta, *_ = fed
    a, b = alpha.add_user("nopres"), beta.add_user("presser")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        cb.send_presence(pto=a.jid, ptype="subscribe")
        err = await cb.wait_presence(lambda p: p["type"] == "error" and p["from"].bare == a.jid, timeout=45,
                                     what="the error for the subscription request")
        assert stanza_error(err)[0] == "policy-violation"
        assert "presence from beta.test" in stanza_error_text(err)
        await ca.presences.assert_none(lambda p: p["type"] == "subscribe", within=2,
                                       what="the subscription request")


async def test_room_join_outbound_refused(fed):
    """Rooms may not go out to beta: joining a room there is answered with an error
    presence naming the rule; a security event records it."""
    alpha, beta, *_ = fed
    a = alpha.add_user("joiner")
    room = f"r{secrets.token_hex(3)}@conference.beta.test"
    async with online(alpha, a) as ca:
        p = ca.make_presence(pto=f"{room}/alice")
        p.xml.append(ET.Element(f"{{{NS_MUC}}}x"))
        p.send()
        err = await ca.wait_presence(lambda p: p["type"] == "error" and p["from"].bare == room, timeout=30,
                                     what="the error presence for the join")
        assert stanza_error(err)[0] == "policy-violation"
        assert "rooms on conference.beta.test" in stanza_error_text(err)
    assert wait_for(lambda: [e for e in events_list(alpha) if e["rule"] == "s2s.rules" and e["account"] == a.jid])


async def test_partner_users_in_our_rooms(fed):
    """Rooms inbound from beta: bob@beta.test joins a room on conference.alpha.test and
    talks with alice, although alpha's own users may not join beta's rooms."""
    alpha, beta, *_ = fed
    a, b = alpha.add_user("host"), beta.add_user("visitor")
    room = f"pol-{secrets.token_hex(3)}@conference.alpha.test"
    ca, cb = make_client(alpha, a, "pc"), make_client(beta, b, "pc")
    for c in (ca, cb):
        for p in ("xep_0004", "xep_0030", "xep_0045"):
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
        cb.make_message(mto=room, mbody=f"hello room {tag}", mtype="groupchat").send()
        got = await ca.wait_message(lambda m: m["type"] == "groupchat" and m["body"] == f"hello room {tag}",
                                    timeout=45, what="bob's groupchat message on alpha")
        assert got["from"].resource == "bob"
        ca.make_message(mto=room, mbody=f"welcome {tag}", mtype="groupchat").send()
        await cb.wait_message(lambda m: m["type"] == "groupchat" and m["body"] == f"welcome {tag}",
                              timeout=45, what="alice's groupchat message on beta")
    finally:
        await ca.logout()
        await cb.logout()
        ca.kill()
        cb.kill()


async def test_exempt_account_reaches_unlisted_domain(fed):
    """gamma.test is not on alpha's allow-list: the execs group's boss talks with gamma
    both ways; an ordinary account is refused, and so is gamma writing to it."""
    alpha, _, gamma, boss, _ = fed
    a, c = alpha.add_user("plain"), gamma.add_user("carol")
    async with online(alpha, boss) as cboss, online(alpha, a) as ca, online(gamma, c) as cc:
        t = secrets.token_hex(4)
        cboss.send_msg(c.jid, f"from the boss {t}")
        m = await cc.wait_message(lambda m: m["body"] == f"from the boss {t}", timeout=45,
                                  what="the boss's message on gamma")
        assert m["from"].bare == boss.jid
        cc.send_msg(m["from"].full, f"to the boss {t}")
        await cboss.wait_message(lambda m: m["body"] == f"to the boss {t}", timeout=45,
                                 what="carol's answer on alpha")
        mid = send_msg_id(ca, c.jid, "may I?")
        await expect_refusal(ca, mid, "gamma.test", timeout=20)
        mid = send_msg_id(cc, a.jid, f"unsolicited {t}")
        await expect_refusal(cc, mid, "gamma.test")
        await ca.messages.assert_none(lambda m: m["body"] == f"unsolicited {t}", within=2,
                                      what="gamma's message to an ordinary account")
    assert wait_for(lambda: [e for e in events_list(alpha) if e["rule"] == "s2s.allow-list" and e["account"] == c.jid],
                    what="a security event for gamma's refused message")


async def test_barred_account_cannot_federate(fed):
    alpha, beta, _, _, intern = fed
    b = beta.add_user("partner")
    async with online(alpha, intern) as ci, online(beta, b) as cb:
        mid = send_msg_id(ci, b.jid, "hello partner")
        await expect_refusal(ci, mid, intern.jid, "may not federate", timeout=20)
        await cb.messages.assert_none(lambda m: m["body"] == "hello partner", within=2, what="the intern's message")
        t = secrets.token_hex(4)
        mid = send_msg_id(cb, intern.jid, f"hello intern {t}")
        await expect_refusal(cb, mid, intern.jid)
        await ci.messages.assert_none(lambda m: m["body"] == f"hello intern {t}", within=2,
                                      what="the partner's message")
    ev = wait_for(lambda: [e for e in events_list(alpha) if e["rule"] == "s2s.deny-user"],
                  what="security events for the barred account")
    assert {e["account"] for e in ev} >= {intern.jid, b.jid}, ev
    recs = archive_search(alpha, None, "--verdict", "blocked", "--with", intern.jid)
    assert any(r["direction"] == "outbound" for r in recs), recs


async def test_server_level_iqs_answered(fed):
    """A remote user asks alpha.test itself: ping, disco#info and version are answered;
    anything else is still service-unavailable."""
    alpha, beta, *_ = fed
    b = beta.add_user("asker")
    async with online(beta, b) as cb:
        r = await cb.iq("get", f"<ping xmlns='{NS_PING}'/>", to="alpha.test", timeout=45)
        assert r["type"] == "result", r
        assert r["from"].full == "alpha.test"
        r = await cb.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to="alpha.test", timeout=30)
        assert r["type"] == "result", r
        ident = r.xml.find(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}identity")
        assert ident is not None and ident.get("category") == "server", r
        r = await cb.iq("get", f"<query xmlns='{NS_VERSION}'/>", to="alpha.test", timeout=30)
        assert r["type"] == "result", r
        assert r.xml.findtext(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}name") == "Rampart"
        r = await cb.iq("set", f"<ping xmlns='{NS_PING}'/>", to="alpha.test", timeout=30)
        assert r["type"] == "error", r
        r = await cb.iq("get", "<query xmlns='jabber:iq:last'/>", to="alpha.test", timeout=30)
        assert r["type"] == "error" and stanza_error(r)[0] == "service-unavailable", r


async def test_queued_stanzas_judged_again_after_a_policy_change():
    """A message waits in x.test's queue while y.test is down; x restarts with its sender
    barred from federating: when y is back, the message is refused (security event), not
    delivered."""
    work = WORK / f"requeue-{secrets.token_hex(3)}"
    ca = CertAuthority(work / "ca")
    x = s2s_server(work / "x", ca, "x.test", ["y.test"])
    y = s2s_server(work / "y", ca, "y.test", ["x.test"], guard={"enabled": False})
    route_to(x, y)
    route_to(y, x)
    x.start()
    try:
        u, v = x.add_user("waiting"), User(f"v{secrets.token_hex(3)}", "unused", "y.test")
        t = secrets.token_hex(4)
        async with online(x, u) as cu:
            cu.send_msg(v.jid, f"queued {t}")
            await cu.sync()

        def queued():
            r = x.cli("s2s", "status", "--json")
            return r.returncode == 0 and '"queued":1' in r.stdout.replace(" ", "")
        wait_for(queued, what="the message queued for y.test")
        x.stop()
        x.s2s["deny_users"] = [u.jid]
        x.write_config()
        x.start()
        y.start()
        ev = wait_for(lambda: [e for e in events_list(x) if e["rule"] == "s2s.deny-user" and e["account"] == u.jid],
                      timeout=60, what="the queued message refused after the restart")
        assert u.jid in ev[0]["reason"]
        wait_for(lambda: '"queued":0' in x.cli("s2s", "status", "--json").stdout.replace(" ", "")
                 or not x.cli("s2s", "status", "--json").stdout.strip(), what="the queue emptied")
        assert not [r for r in archive_search(y, t)], "the refused message reached y.test"
    finally:
        x.stop()
        y.stop()
