"""XEP-0313 Message Archive Management over the compliance archive: what a
user sees of their own history (raw IQs from a slixmpp client).

Covers: the account's disco#info advertises urn:xmpp:mam:2 (and XEP-0359
urn:xmpp:sid:0, since delivered copies carry stanza-ids); a query returns
the user's messages oldest first as <result id=SEQ><forwarded><delay/>
<message/></forwarded></result> with the original from/to/body and a delay
stamp inside the test window, then <fin> with an RSM set (first with index,
last, count) and complete='true' on the last page; the 'with' (bare or full JID),
'start' and 'end' form fields; the delay stamp is the archived time; RSM max/after/before forward and backward paging,
before='' for the last page and max=0 for the count only; a delivered
message's <stanza-id by='bare JID' id=.../> works as an RSM <after/>; the
guard's blocked messages are not in the user's view (but are in the
compliance archive); an unknown, malformed or other user's archive id is
item-not-found; prefs default='never' hides the history from the user's
own view only (admin search still shows it), and bad prefs are bad-request;
the query form (iq get) lists the fields; a query to another user's archive
is refused; a client cannot plant its own <stanza-id/>; urn:xmpp:sid:0 is
advertised; with prefs 'never' the RSM set reveals nothing; messages a
quarantine withdrew from offline queues are not served by MAM.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest

from rampart_harness import (
    DOMAIN, NS_CLIENT, NS_DELAY, NS_DISCO_INFO, NS_SID, archive_search, stanza_error,
    stanza_id_of,
)

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DATA = "jabber:x:data"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def now_ms() -> int:
    return int(time.time() * 1000)


def xep82(ms: int) -> str:
    d = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def parse_stamp(s: str) -> int:
    return int(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class MamItem:
    id: str
    frm: str
    to: str
    body: str | None
    stamp_ms: int


@dataclass
class MamPage:
    iq: object
    items: list[MamItem] = field(default_factory=list)
    complete: bool = False
    first: str | None = None
    first_index: int | None = None
    last: str | None = None
    count: int | None = None

    @property
    def error(self) -> str | None:
        return stanza_error(self.iq)[0] if self.iq["type"] == "error" else None

    @property
    def bodies(self) -> list[str | None]:
        return [i.body for i in self.items]


async def mam(client, *, with_: str | None = None, start: int | None = None,
              end: int | None = None, max: int | None = None, after: str | None = None,
              before: str | None = None, to: str | None = None) -> MamPage:
    """One XEP-0313 query; collects the <result/> messages it produced."""
    qid = "q" + secrets.token_hex(4)
    fields = [("FORM_TYPE", NS_MAM)]
    if with_ is not None:
        fields.append(("with", with_))
    if start is not None:
        fields.append(("start", xep82(start)))
    if end is not None:
        fields.append(("end", xep82(end)))
    hidden = " type='hidden'"
    form = "".join(
        f"<field var='{k}'{hidden if k == 'FORM_TYPE' else ''}><value>{v}</value></field>"
        for k, v in fields)
    rsm = ""
    if max is not None:
        rsm += f"<max>{max}</max>"
    if after is not None:
        rsm += f"<after>{after}</after>"
    if before is not None:
        rsm += f"<before>{before}</before>" if before else "<before/>"
    xml = (f"<query xmlns='{NS_MAM}' queryid='{qid}'>"
           f"<x xmlns='{NS_DATA}' type='submit'>{form}</x>"
           + (f"<set xmlns='{NS_RSM}'>{rsm}</set>" if rsm else "") + "</query>")
    resp = await client.iq("set", xml, to=to)
    page = MamPage(resp)
    if resp["type"] != "result":
        return page

    def ours(m) -> bool:
        r = m.xml.find(f"{{{NS_MAM}}}result")
        return r is not None and r.get("queryid") == qid

    # Results are sent before the IQ result on the same stream.
    for m in client.messages.unconsumed(ours):
        r = m.xml.find(f"{{{NS_MAM}}}result")
        assert m["from"] == client.boundjid.bare, f"MAM result from {m['from']!r}: {m}"
        fwd = r.find(f"{{{NS_FORWARD}}}forwarded")
        assert fwd is not None, f"<result/> without <forwarded/>: {m}"
        delay = fwd.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None and delay.get("stamp"), f"<forwarded/> without <delay/>: {m}"
        inner = fwd.find(f"{{{NS_CLIENT}}}message")
        assert inner is not None, f"<forwarded/> without a jabber:client <message/>: {m}"
        body = inner.find(f"{{{NS_CLIENT}}}body")
        page.items.append(MamItem(r.get("id"), inner.get("from"), inner.get("to"),
                                  None if body is None else body.text,
                                  parse_stamp(delay.get("stamp"))))
    client.messages._consumed.update(
        i for i, m in enumerate(client.messages.items) if ours(m))
    fin = resp.xml.find(f"{{{NS_MAM}}}fin")
    assert fin is not None, f"MAM result without <fin/>: {resp}"
    page.complete = fin.get("complete") in ("true", "1")
    s = fin.find(f"{{{NS_RSM}}}set")
    assert s is not None, f"<fin/> without an RSM <set/>: {resp}"
    first = s.find(f"{{{NS_RSM}}}first")
    if first is not None:
        page.first = first.text
        if first.get("index") is not None:
            page.first_index = int(first.get("index"))
    last = s.find(f"{{{NS_RSM}}}last")
    if last is not None:
        page.last = last.text
    count = s.find(f"{{{NS_RSM}}}count")
    if count is not None:
        page.count = int(count.text)
    return page


async def converse(a, b, ua, ub, tag: str, n_ab: int = 5, n_ba: int = 2) -> list[str]:
    """a sends n_ab messages to b, then b sends n_ba to a (delivered in this
    order, so archived in this order). Returns the bodies in order."""
    out = []
    for i in range(n_ab):
        body = f"{tag} a-to-b {i}"
        a.send_msg(ub.jid, body)
        out.append(body)
    await b.messages.collect(n_ab, lambda m: m["body"] in out, what="a's messages")
    ba = []
    for i in range(n_ba):
        body = f"{tag} b-to-a {i}"
        b.send_msg(ua.jid, body)
        ba.append(body)
    await a.messages.collect(n_ba, lambda m: m["body"] in ba, what="b's messages")
    return out + ba


async def online(clients, user, res):
    c = await clients(user, res)
    await c.go_online()
    return c


async def account_features(new_user, clients) -> set[str]:
    alice = new_user("alice")
    a = await clients(alice, "pc")
    resp = await a.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=alice.jid)
    assert resp["type"] == "result", resp
    return {f.get("var") for f in resp.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}


async def test_account_advertises_mam(server, new_user, clients):
    feats = await account_features(new_user, clients)
    assert NS_MAM in feats, feats


async def test_account_advertises_stanza_ids(server, new_user, clients):
    feats = await account_features(new_user, clients)
    assert NS_SID in feats, (
        f"XEP-0359 §4: the account stamps <stanza-id/> on delivered messages but its "
        f"disco#info does not advertise {NS_SID}; features: {sorted(feats)}")


async def test_query_form_and_foreign_archive(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    resp = await a.iq("get", f"<query xmlns='{NS_MAM}'/>")
    assert resp["type"] == "result", resp
    vars_ = {f.get("var") for f in resp.xml.iter(f"{{{NS_DATA}}}field")}
    assert {"FORM_TYPE", "with", "start", "end"} <= vars_, vars_
    page = await mam(a, to=bob.jid)
    assert page.error in ("forbidden", "service-unavailable"), page.iq


async def test_history_with_paging_forward_and_backward(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    t0 = now_ms()
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "h" + secrets.token_hex(4)
    bodies = await converse(a, b, alice, bob, tag)  # 7 messages
    a.send_msg(carol.jid, f"{tag} to carol offline")
    await a.sync()
    t1 = now_ms()

    full = await mam(a, with_=bob.jid)
    assert full.error is None, full.iq
    assert full.bodies == bodies
    assert full.count == 7 and full.complete and full.first_index == 0, full
    assert full.first == full.items[0].id and full.last == full.items[-1].id
    ids = [i.id for i in full.items]
    assert [int(x) for x in ids] == sorted(int(x) for x in ids), ids
    for it in full.items:
        assert t0 - 50 <= it.stamp_ms <= t1 + 50, (t0, it.stamp_ms, t1)
        if "a-to-b" in it.body:
            assert it.frm == f"{alice.jid}/pc" and it.to == bob.jid, it
        else:
            assert it.frm == f"{bob.jid}/phone" and it.to == alice.jid, it
    # The archive ids are the compliance archive's sequence numbers.
    admin = {r["body"]: r for r in archive_search(server, tag)}
    assert {i.body: int(i.id) for i in full.items} == {b_: admin[b_]["seq"] for b_ in bodies}
    for it in full.items:
        assert it.stamp_ms == admin[it.body]["at_ms"], (it, admin[it.body]["at_ms"])

    # 'with' a full JID: that resource only
    res = await mam(a, with_=f"{bob.jid}/phone")
    assert res.bodies == bodies[5:], res.bodies
    assert (await mam(a, with_=f"{bob.jid}/laptop")).items == []
    # a page larger than the server's maximum is capped, not refused
    big = await mam(a, with_=bob.jid, max=100000)
    assert big.error is None and big.bodies == bodies, big.iq

    # Without 'with': the offline message to carol is in alice's view too; bob's
    # view does not have it.
    mine = await mam(a, start=t0)
    assert mine.bodies == bodies + [f"{tag} to carol offline"], mine.bodies
    bobs = await mam(b, start=t0)
    assert bobs.bodies == bodies, bobs.bodies

    # Forward paging.
    p1 = await mam(a, with_=bob.jid, max=3)
    assert p1.bodies == bodies[0:3] and not p1.complete, p1
    assert (p1.first, p1.last, p1.first_index, p1.count) == (ids[0], ids[2], 0, 7), p1
    p2 = await mam(a, with_=bob.jid, max=3, after=p1.last)
    assert p2.bodies == bodies[3:6] and not p2.complete, p2
    assert (p2.first_index, p2.count) == (3, 7), p2
    p3 = await mam(a, with_=bob.jid, max=3, after=p2.last)
    assert p3.bodies == bodies[6:7] and p3.complete, p3
    assert p3.first_index == 6, p3
    p4 = await mam(a, with_=bob.jid, max=3, after=p3.last)
    assert p4.items == [] and p4.complete and p4.count == 7, p4

    # Backward paging: <before/> is the last page.
    q1 = await mam(a, with_=bob.jid, max=3, before="")
    assert q1.bodies == bodies[4:7] and not q1.complete, q1
    assert q1.first_index == 4, q1
    q2 = await mam(a, with_=bob.jid, max=3, before=q1.first)
    assert q2.bodies == bodies[1:4] and not q2.complete, q2
    q3 = await mam(a, with_=bob.jid, max=3, before=q2.first)
    assert q3.bodies == bodies[0:1] and q3.complete, q3
    assert q3.first_index == 0

    # max=0: only the count.
    z = await mam(a, with_=bob.jid, max=0)
    assert z.items == [] and z.count == 7, z
    # A page exactly the size of the rest is complete.
    e = await mam(a, with_=bob.jid, max=7)
    assert e.bodies == bodies and e.complete, e


async def test_start_and_end(server, new_user, clients):
    import asyncio
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "se" + secrets.token_hex(4)
    marks = []
    for i in range(3):
        a.send_msg(bob.jid, f"{tag} {i}")
        await b.wait_message(lambda m, i=i: m["body"] == f"{tag} {i}")
        await asyncio.sleep(0.03)
        marks.append(now_ms())
        await asyncio.sleep(0.03)
    every = [f"{tag} {i}" for i in range(3)]
    assert (await mam(a, with_=bob.jid)).bodies == every
    assert (await mam(a, with_=bob.jid, start=marks[0])).bodies == every[1:]
    assert (await mam(a, with_=bob.jid, end=marks[0])).bodies == every[:1]
    assert (await mam(a, with_=bob.jid, start=marks[0], end=marks[1])).bodies == every[1:2]
    assert (await mam(a, with_=bob.jid, start=marks[2])).bodies == []
    # malformed dates are bad-request
    resp = await a.iq("set", f"<query xmlns='{NS_MAM}'><x xmlns='{NS_DATA}' type='submit'>"
                             f"<field var='FORM_TYPE'><value>{NS_MAM}</value></field>"
                             "<field var='start'><value>last tuesday</value></field></x></query>")
    assert resp["type"] == "error" and stanza_error(resp)[0] == "bad-request", resp


async def test_stanza_id_is_an_rsm_after(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "sid" + secrets.token_hex(4)
    got = []
    for i in range(4):
        a.send_msg(bob.jid, f"{tag} {i}")
        got.append(await b.wait_message(lambda m, i=i: m["body"] == f"{tag} {i}"))
    sids = [stanza_id_of(m, bob.jid) for m in got]
    assert all(sids), [str(m) for m in got]
    assert len(set(sids)) == 4
    # No stanza-id claimed in alice's name, or in the server's for another JID.
    for m in got:
        assert [s.get("by") for s in m.xml.findall(f"{{{NS_SID}}}stanza-id")] == [bob.jid], m

    page = await mam(b, with_=alice.jid, after=sids[1])
    assert page.bodies == [f"{tag} 2", f"{tag} 3"], page
    assert [i.id for i in page.items] == sids[2:]
    # The same ids work in the sender's view.
    page = await mam(a, with_=bob.jid, after=sids[2])
    assert page.bodies == [f"{tag} 3"], page
    page = await mam(b, with_=alice.jid, before=sids[1])
    assert page.bodies == [f"{tag} 0"], page


async def test_client_cannot_forge_a_stanza_id(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "forge" + secrets.token_hex(4)
    a.send_raw(f"<message to='{bob.jid}' type='chat'><body>{tag}</body>"
               f"<stanza-id xmlns='{NS_SID}' by='{bob.jid}' id='1'/></message>")
    m = await b.wait_message(lambda m: m["body"] == tag)
    sids = [s.get("id") for s in m.xml.findall(f"{{{NS_SID}}}stanza-id")
            if s.get("by") == bob.jid]
    rec = archive_search(server, tag)
    assert len(rec) == 1, rec
    assert sids == [str(rec[0]["seq"])], (sids, rec[0]["seq"], str(m))


async def test_blocked_messages_are_not_in_the_users_view(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "blk" + secrets.token_hex(4)
    a.send_msg(bob.jid, f"{tag} eicar {EICAR}")
    a.send_msg(bob.jid, f"{tag} link http://203.0.113.7/x.scr")
    await a.messages.collect(2, lambda m: m["type"] == "error", what="policy-violation bounces")
    a.send_msg(bob.jid, f"{tag} fine")
    await b.wait_message(lambda m: m["body"] == f"{tag} fine")

    assert (await mam(a, with_=bob.jid)).bodies == [f"{tag} fine"]
    bv = await mam(b, with_=alice.jid)
    assert bv.bodies == [f"{tag} fine"] and bv.count == 1, bv
    # ... but the compliance archive has them.
    admin = archive_search(server, tag)
    assert len(admin) == 3, admin


async def test_unknown_after_is_item_not_found(server, new_user, clients):
    alice, bob, carol, dave = (new_user(n) for n in ("alice", "bob", "carol", "dave"))
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    c = await online(clients, carol, "c")
    d = await online(clients, dave, "d")
    tag = "inf" + secrets.token_hex(4)
    await converse(a, b, alice, bob, tag, 2, 0)
    c.send_msg(dave.jid, f"{tag} private")
    m = await d.wait_message(lambda m: m["body"] == f"{tag} private")
    foreign = stanza_id_of(m, dave.jid)
    assert foreign

    for bad in ("999999999", "not-a-number", "-1", foreign):
        p = await mam(a, after=bad)
        assert p.error == "item-not-found", (bad, p.iq)
        p = await mam(a, before=bad)
        assert p.error == "item-not-found", (bad, p.iq)
    # a valid id still works afterwards
    assert len((await mam(a, with_=bob.jid)).items) == 2


async def test_prefs_never_hides_only_the_users_own_view(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    tag = "prefs" + secrets.token_hex(4)

    resp = await a.iq("get", f"<prefs xmlns='{NS_MAM}'/>")
    assert resp["type"] == "result", resp
    assert resp.xml.find(f"{{{NS_MAM}}}prefs").get("default") == "always", resp

    resp = await a.iq("set", f"<prefs xmlns='{NS_MAM}' default='sometimes'/>")
    assert resp["type"] == "error" and stanza_error(resp)[0] == "bad-request", resp

    resp = await a.iq("set", f"<prefs xmlns='{NS_MAM}' default='never'/>")
    assert resp["type"] == "result", resp
    resp = await a.iq("get", f"<prefs xmlns='{NS_MAM}'/>")
    assert resp.xml.find(f"{{{NS_MAM}}}prefs").get("default") == "never", resp

    await converse(a, b, alice, bob, tag, 2, 1)
    hidden = await mam(a, with_=bob.jid)
    assert hidden.error is None, hidden.iq
    assert hidden.items == [], hidden.bodies
    # bob's preferences are his own: he still sees the conversation
    assert len((await mam(b, with_=alice.jid)).items) == 3
    # never opts out of the compliance archive
    admin = archive_search(server, tag)
    assert len(admin) == 3, admin


async def test_prefs_never_rsm_set_reveals_nothing(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice, "pc")
    b = await online(clients, bob, "phone")
    resp = await a.iq("set", f"<prefs xmlns='{NS_MAM}' default='never'/>")
    assert resp["type"] == "result", resp
    await converse(a, b, alice, bob, "rsm" + secrets.token_hex(4), 2, 1)
    hidden = await mam(a, with_=bob.jid)
    assert hidden.items == []
    assert (hidden.first, hidden.last, hidden.count) == (None, None, 0), hidden


async def test_messages_withdrawn_by_a_quarantine_are_not_served_by_mam(server, new_user, clients):
    worm = new_user("worm")
    victims = [new_user("v") for _ in range(5)]
    w = await clients(worm, "pc")
    link = f"https://files.example.net/{secrets.token_hex(4)}/invoice"
    for v in victims:
        w.send_msg(v.jid, f"look at this {link}")
    err = await w.wait_message(lambda m: m["type"] == "error", timeout=10,
                               what="the blast rule's policy-violation")
    assert stanza_error(err)[0] == "policy-violation", err
    v = await online(clients, victims[0], "phone")
    # the offline copy was withdrawn ...
    await v.messages.assert_none(lambda m: link in (m["body"] or ""), within=1.0,
                                 what="a withdrawn offline message")
    # ... and MAM must not hand it out either
    page = await mam(v, with_=worm.jid)
    assert page.error is None, page.iq
    assert not [b for b in page.bodies if link in (b or "")], page.bodies
