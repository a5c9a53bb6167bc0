"""Per-account XEPs answered by the server.

Covers: XEP-0049 private XML storage (set/get, overwrite, isolation between
accounts, empty element when nothing is stored, reserved namespaces, empty
query, size limit, another account's storage); XEP-0054 vcard-temp (set/get
own vCard, none -> item-not-found, empty set removes it, size limit, another
user's vCard by bare JID); XEP-0012 last activity (server uptime, own account
while online, forbidden without a presence subscription, time and status
after logout); XEP-0191 blocking command (get/block/unblock/unblock-all,
pushes to resources that asked for the list, bad requests, the item limit,
presence hidden from blocked subscribers, stanzas to and from blocked
entities refused); and the disco#info features.
"""

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rampart_harness import DOMAIN, NS_CLIENT, NS_DISCO_INFO, StanzaBox, roster_items, stanza_error

NS_PRIVATE = "jabber:iq:private"
NS_VCARD = "vcard-temp"
NS_LAST = "jabber:iq:last"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"

# Room for the 64 KiB-item tests (the server's default stanza limit is 256 KiB).
RAMPART_LIMITS = {"max_stanza_bytes": 512 * 1024}



def q_private(inner: str) -> str:
    return f"<query xmlns='{NS_PRIVATE}'>{inner}</query>"


def private_child(resp, tag: str):
    q = resp.xml.find(f"{{{NS_PRIVATE}}}query")
    assert q is not None, f"no private query in {resp}"
    return q.find(tag)


def vcard_of(resp):
    return resp.xml.find(f"{{{NS_VCARD}}}vCard")


def last_query(resp):
    q = resp.xml.find(f"{{{NS_LAST}}}query")
    assert q is not None, f"no last-activity query in {resp}"
    return q


def error_cond(resp):
    assert resp["type"] == "error", f"expected an error, got {resp}"
    return stanza_error(resp)[0]


# -- XEP-0049 ----------------------------------------------------------------------

async def test_private_set_get_overwrite(server, new_user, clients):
    c = await clients(new_user("priv"), "r")
    resp = await c.iq("get", q_private("<exodus xmlns='exodus:prefs'/>"))
    assert resp["type"] == "result", resp
    empty = private_child(resp, "{exodus:prefs}exodus")
    assert empty is not None and len(empty) == 0, "nothing stored: the empty element comes back"

    resp = await c.iq("set", q_private(
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>"))
    assert resp["type"] == "result", resp
    got = private_child(await c.iq("get", q_private("<exodus xmlns='exodus:prefs'/>")),
                        "{exodus:prefs}exodus")
    assert got.findtext("{exodus:prefs}defaultnick") == "Hamlet"

    await c.iq("set", q_private("<exodus xmlns='exodus:prefs'><defaultnick>Ham</defaultnick></exodus>"))
    # Another element in the same namespace is kept separately.
    await c.iq("set", q_private("<other xmlns='exodus:prefs'>x</other>"))
    got = private_child(await c.iq("get", q_private("<exodus xmlns='exodus:prefs'/>")),
                        "{exodus:prefs}exodus")
    assert got.findtext("{exodus:prefs}defaultnick") == "Ham"
    other = private_child(await c.iq("get", q_private("<other xmlns='exodus:prefs'/>")),
                          "{exodus:prefs}other")
    assert other.text == "x"


async def test_private_is_per_account_and_persistent(server, new_user, clients):
    a, b = new_user("pa"), new_user("pb")
    ca = await clients(a, "r")
    await ca.iq("set", q_private("<storage xmlns='storage:bookmarks'><url name='x' url='http://x/'/></storage>"))
    cb = await clients(b, "r")
    got = private_child(await cb.iq("get", q_private("<storage xmlns='storage:bookmarks'/>")),
                        "{storage:bookmarks}storage")
    assert got is not None and len(got) == 0, "b must not see a's data"
    await ca.logout()
    ca2 = await clients(a, "r2")
    got = private_child(await ca2.iq("get", q_private("<storage xmlns='storage:bookmarks'/>")),
                        "{storage:bookmarks}storage")
    assert got.find("{storage:bookmarks}url").get("name") == "x"


async def test_private_errors(server, new_user, clients):
    a, b = new_user("pe"), new_user("pf")
    c = await clients(a, "r")
    for ns in (NS_CLIENT, "jabber:server", NS_PRIVATE):
        for t in ("get", "set"):
            resp = await c.iq(t, q_private(f"<x xmlns='{ns}'/>"))
            assert error_cond(resp) == "not-acceptable", (ns, t, resp)
    assert error_cond(await c.iq("get", q_private(""))) == "not-acceptable"
    assert error_cond(await c.iq("set", q_private(""))) == "not-acceptable"
    # One namespace per get.
    assert error_cond(await c.iq("get", q_private("<a xmlns='a:a'/><b xmlns='b:b'/>"))) == "bad-request"
    # The server's or another account's storage.
    resp = await c.iq("get", q_private("<a xmlns='a:a'/>"), to=DOMAIN)
    assert error_cond(resp) == "forbidden"
    resp = await c.iq("set", q_private("<a xmlns='a:a'/>"), to=b.jid)
    assert error_cond(resp) in ("forbidden", "service-unavailable"), resp  # both per §2.3
    # Size limit: 64 KiB per element.
    big = "y" * (65 * 1024)
    resp = await c.iq("set", q_private(f"<big xmlns='big:data'>{big}</big>"))
    assert error_cond(resp) == "not-acceptable"
    ok = "y" * (60 * 1024)
    assert (await c.iq("set", q_private(f"<big xmlns='big:data'>{ok}</big>")))["type"] == "result"


async def test_private_to_own_bare_jid(server, new_user, clients):
    u = new_user("pown")
    c = await clients(u, "r")
    resp = await c.iq("set", q_private("<p xmlns='p:p'>1</p>"), to=u.jid)
    assert resp["type"] == "result", resp
    got = private_child(await c.iq("get", q_private("<p xmlns='p:p'/>"), to=u.jid), "{p:p}p")
    assert got.text == "1"


# -- XEP-0054 ----------------------------------------------------------------------

VCARD = ("<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>jc</NICKNAME>"
         "<N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N></vCard>")


async def test_vcard_set_and_get_own(server, new_user, clients):
    c = await clients(new_user("vc"), "r")
    resp = await c.iq("get", "<vCard xmlns='vcard-temp'/>")
    assert error_cond(resp) == "item-not-found"
    assert (await c.iq("set", VCARD))["type"] == "result"
    resp = await c.iq("get", "<vCard xmlns='vcard-temp'/>")
    assert resp["type"] == "result", resp
    v = vcard_of(resp)
    assert v.findtext("{vcard-temp}FN") == "Juliet Capulet"
    assert v.find("{vcard-temp}N").findtext("{vcard-temp}GIVEN") == "Juliet"
    # An empty vCard removes it.
    assert (await c.iq("set", "<vCard xmlns='vcard-temp'/>"))["type"] == "result"
    assert error_cond(await c.iq("get", "<vCard xmlns='vcard-temp'/>")) == "item-not-found"


async def test_vcard_errors(server, new_user, clients):
    c = await clients(new_user("vce"), "r")
    photo = "A" * (70 * 1024)
    resp = await c.iq("set", f"<vCard xmlns='vcard-temp'><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard>")
    assert error_cond(resp) == "not-acceptable"
    assert error_cond(await c.iq("get", "<vCard xmlns='vcard-temp'/>", to=DOMAIN)) == "item-not-found"
    assert error_cond(await c.iq("set", VCARD, to=DOMAIN)) == "forbidden"


async def test_vcard_with_slixmpp_plugin(server, new_user, clients):
    c = clients.new(new_user("vcp"), "r")
    c.register_plugin("xep_0054")
    await c.login()
    vc = c.plugin["xep_0054"].make_vcard()
    vc["FN"] = "Romeo Montague"
    await c.plugin["xep_0054"].publish_vcard(vc, timeout=10)
    resp = await c.iq("get", "<vCard xmlns='vcard-temp'/>")
    assert vcard_of(resp).findtext("{vcard-temp}FN") == "Romeo Montague"


async def test_vcard_of_another_user(server, new_user, clients):
    a, b, ghost = new_user("va"), new_user("vb"), server.unknown_user()
    ca, cb = await clients(a, "r"), await clients(b, "r")
    await ca.iq("set", VCARD)
    resp = await cb.iq("get", "<vCard xmlns='vcard-temp'/>", to=a.jid)
    assert resp["type"] == "result", resp
    assert resp["from"] == a.jid
    assert vcard_of(resp).findtext("{vcard-temp}FN") == "Juliet Capulet"
    assert error_cond(await ca.iq("get", "<vCard xmlns='vcard-temp'/>", to=b.jid)) == "item-not-found"
    assert error_cond(await cb.iq("set", VCARD, to=a.jid)) == "forbidden"
    resp = await cb.iq("get", "<vCard xmlns='vcard-temp'/>", to=ghost.jid)
    assert error_cond(resp) == "service-unavailable"
    # Own bare JID works like no 'to'.
    resp = await ca.iq("get", "<vCard xmlns='vcard-temp'/>", to=a.jid)
    assert resp["type"] == "result", resp


# -- XEP-0012 ----------------------------------------------------------------------

async def test_last_activity_of_server_and_self(server, new_user, clients):
    c = await clients(new_user("la"), "r")
    resp = await c.iq("get", f"<query xmlns='{NS_LAST}'/>", to=DOMAIN)
    assert resp["type"] == "result", resp
    assert resp["from"] == DOMAIN
    assert 0 <= int(last_query(resp).get("seconds")) < 24 * 3600
    await c.go_online()
    resp = await c.iq("get", f"<query xmlns='{NS_LAST}'/>")
    assert resp["type"] == "result", resp
    assert last_query(resp).get("seconds") == "0"
    assert error_cond(await c.iq("set", f"<query xmlns='{NS_LAST}'/>", to=DOMAIN)) == "bad-request"


async def subscribe(a, a_user, b, b_user):
    """a subscribes to b's presence; b approves. Both are online afterwards."""
    await a.roster_get()
    await b.roster_get()
    await a.go_online()
    await b.go_online()
    a.send_presence(pto=b_user.jid, ptype="subscribe")
    await b.wait_presence(lambda p: p["from"].bare == a_user.jid and p.xml.get("type") == "subscribe",
                          what="subscription request")
    b.send_presence(pto=a_user.jid, ptype="subscribed")
    await a.roster_pushes.wait_for(
        lambda p: (roster_items(p).get(b_user.jid) is not None
                   and roster_items(p)[b_user.jid].get("subscription") in ("to", "both")),
        what="subscription push")


async def test_last_activity_of_contact(server, new_user, clients):
    a, b, stranger = new_user("lb"), new_user("lc"), new_user("ld")
    ca, cb = await clients(a, "r"), await clients(b, "r")
    cs = await clients(stranger, "r")
    await subscribe(ca, a, cb, b)  # a sees b's presence
    resp = await ca.iq("get", f"<query xmlns='{NS_LAST}'/>", to=b.jid)
    assert resp["type"] == "result", resp
    assert last_query(resp).get("seconds") == "0", "online: 0 seconds"
    assert error_cond(await cs.iq("get", f"<query xmlns='{NS_LAST}'/>", to=b.jid)) == "forbidden"

    cb.send_presence(ptype="unavailable", pstatus="Heading Home")
    await cb.sync()
    await cb.logout()
    await asyncio.sleep(1.2)
    resp = await ca.iq("get", f"<query xmlns='{NS_LAST}'/>", to=b.jid)
    assert resp["type"] == "result", resp
    q = last_query(resp)
    assert 1 <= int(q.get("seconds")) < 60
    assert (q.text or "") == "Heading Home"


# -- XEP-0191 ----------------------------------------------------------------------

def blocklist_jids(resp) -> list[str]:
    bl = resp.xml.find(f"{{{NS_BLOCKING}}}blocklist")
    assert bl is not None, f"no blocklist in {resp}"
    return [i.get("jid") for i in bl.findall(f"{{{NS_BLOCKING}}}item")]


def items_xml(jids) -> str:
    return "".join(f"<item jid='{j}'/>" for j in jids)


def watch_block_pushes(c) -> StanzaBox:
    box = StanzaBox()
    for name in ("block", "unblock"):
        c.register_handler(Callback(
            f"test: {name} push", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_BLOCKING}}}{name}"),
            lambda iq: box.put(iq) if iq["type"] == "set" else None))
    return box


def push_jids(iq, name: str):
    el = iq.xml.find(f"{{{NS_BLOCKING}}}{name}")
    return None if el is None else sorted(i.get("jid") for i in el.findall(f"{{{NS_BLOCKING}}}item"))


async def test_blocklist_block_unblock_and_pushes(server, new_user, clients):
    u = new_user("bl")
    c1 = await clients(u, "one")
    c2 = await clients(u, "two")
    c3 = await clients(u, "three")  # never asks for the blocklist: no pushes
    box2, box3 = watch_block_pushes(c2), watch_block_pushes(c3)
    resp = await c1.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>")
    assert resp["type"] == "result" and blocklist_jids(resp) == []
    await c2.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>")

    resp = await c1.iq("set", f"<block xmlns='{NS_BLOCKING}'>"
                              f"{items_xml(['Romeo@Montague.net', 'iago@shakespeare.lit/x', 'evil.example'])}</block>")
    assert resp["type"] == "result", resp
    push = await box2.wait_for(lambda p: push_jids(p, "block") is not None, what="block push")
    assert push_jids(push, "block") == ["evil.example", "iago@shakespeare.lit/x", "romeo@montague.net"]
    assert sorted(blocklist_jids(await c1.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>"))) == \
        ["evil.example", "iago@shakespeare.lit/x", "romeo@montague.net"]

    resp = await c1.iq("set", f"<unblock xmlns='{NS_BLOCKING}'>{items_xml(['romeo@montague.net'])}</unblock>")
    assert resp["type"] == "result", resp
    push = await box2.wait_for(lambda p: push_jids(p, "unblock") is not None, what="unblock push")
    assert push_jids(push, "unblock") == ["romeo@montague.net"]
    assert sorted(blocklist_jids(await c2.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>"))) == \
        ["evil.example", "iago@shakespeare.lit/x"]

    resp = await c1.iq("set", f"<unblock xmlns='{NS_BLOCKING}'/>")
    assert resp["type"] == "result", resp
    push = await box2.wait_for(lambda p: push_jids(p, "unblock") == [], what="unblock-all push")
    assert blocklist_jids(await c1.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>")) == []
    await box3.assert_none(within=0.5, what="a push to a resource that never asked for the list")

    # The list survives a new login.
    await c1.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml(['spam@example.org'])}</block>")
    await c1.logout()
    c4 = await clients(u, "four")
    assert blocklist_jids(await c4.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>")) == ["spam@example.org"]


async def test_blocking_errors(server, new_user, clients):
    u, other = new_user("be"), new_user("bf")
    c = await clients(u, "r")
    assert error_cond(await c.iq("set", f"<block xmlns='{NS_BLOCKING}'/>")) == "bad-request"
    resp = await c.iq("set", f"<block xmlns='{NS_BLOCKING}'><item jid='@bad'/></block>")
    assert error_cond(resp) == "jid-malformed"
    assert error_cond(await c.iq("set", f"<blocklist xmlns='{NS_BLOCKING}'/>")) == "bad-request"
    assert error_cond(await c.iq("get", f"<block xmlns='{NS_BLOCKING}'>{items_xml(['a@b'])}</block>")) == "bad-request"
    resp = await c.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>", to=DOMAIN)
    assert error_cond(resp) == "forbidden"
    # At most 1000 items.
    many = [f"u{i}@spam.example" for i in range(1001)]
    resp = await c.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml(many)}</block>")
    assert error_cond(resp) == "not-acceptable"
    resp = await c.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml(many[:1000])}</block>")
    assert resp["type"] == "result", resp
    resp = await c.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml(['one-more@spam.example'])}</block>")
    assert error_cond(resp) == "resource-constraint"
    assert len(blocklist_jids(await c.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>"))) == 1000


async def test_block_hides_presence_from_subscribed_contact(server, new_user, clients):
    a, b = new_user("bp"), new_user("bq")
    ca, cb = await clients(a, "r"), await clients(b, "r")
    await subscribe(cb, b, ca, a)  # b sees a's presence
    await cb.wait_presence(lambda p: p["from"].bare == a.jid and p.xml.get("type") is None,
                           what="a's presence")
    await ca.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml([b.jid])}</block>")
    await cb.wait_presence(lambda p: p["from"].bare == a.jid and p.xml.get("type") == "unavailable",
                           what="unavailable from a after a blocked b")
    await ca.iq("set", f"<unblock xmlns='{NS_BLOCKING}'>{items_xml([b.jid])}</unblock>")
    await cb.wait_presence(lambda p: p["from"].bare == a.jid and p.xml.get("type") is None,
                           what="a's presence again after unblocking")


async def test_blocked_stanzas_are_refused(server, new_user, clients):
    a, b = new_user("bs"), new_user("bt")
    ca, cb = await clients(a, "r"), await clients(b, "r")
    await ca.go_online()
    await cb.go_online()
    await ca.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml([b.jid])}</block>")
    # Inbound from the blocked JID: dropped, the message bounced with service-unavailable.
    cb.send_msg(a.jid, "hello?")
    err = await cb.wait_message(lambda m: m["type"] == "error", what="error for a blocked message")
    assert stanza_error(err)[0] == "service-unavailable"
    await ca.messages.assert_none(lambda m: m["body"] == "hello?", what="a message from a blocked JID")
    # Outbound to the blocked JID: not-acceptable with <blocked/>.
    ca.send_msg(b.jid, "go away")
    err = await ca.wait_message(lambda m: m["type"] == "error", what="error for a message to a blocked JID")
    assert stanza_error(err)[0] == "not-acceptable"
    assert err.xml.find(f"{{{NS_CLIENT}}}error/{{{NS_BLOCKING_ERRORS}}}blocked") is not None
    await cb.messages.assert_none(lambda m: m["body"] == "go away", what="a message to a blocked JID")


# -- disco -------------------------------------------------------------------------

async def test_disco_lists_the_xep_features(server, new_user, clients):
    c = await clients(new_user("dx"), "r")
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=DOMAIN)
    query = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
    features = {f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")}
    for ns in (NS_PRIVATE, NS_VCARD, NS_LAST, NS_BLOCKING):
        assert ns in features, f"{ns} missing from {features}"
