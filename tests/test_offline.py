"""Offline message storage (RFC 6121 §8.5.2.2, XEP-0160, XEP-0203).

This module's server has ``offline_limit = 5``.

Covers: messages to an account with no available resource are stored and
delivered in order when the user next sends available presence (not
before), each with <delay xmlns='urn:xmpp:delay' from='localhost'
stamp='...'/>; messages to a full JID of an offline account are stored too;
stored messages are delivered once only; going over the per-account limit
bounces with resource-constraint (type wait).
"""

import asyncio
import datetime as dt
import re

from rampart_harness import DOMAIN, NS_DELAY, stanza_error

RAMPART_LIMITS = {"offline_limit": 5}


def parse_stamp(stamp: str) -> dt.datetime:
    """XEP-0082 DateTime -> aware datetime (fractional part cut to µs)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", stamp)
    assert m, f"stamp {stamp!r} is not a XEP-0082 DateTime"
    base, frac, tz = m.groups()
    assert tz, f"stamp without timezone: {stamp!r}"
    frac = (frac or "0")[:6].ljust(6, "0")
    tz = "+00:00" if tz == "Z" else tz
    return dt.datetime.fromisoformat(f"{base}.{frac}{tz}")


async def test_offline_messages_delivered_in_order_with_delay(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    await a.go_online()
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    for i in range(4):
        a.send_msg(bob.jid, f"offline {i}")
    await a.sync()
    await asyncio.sleep(0.5)
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)

    b = await clients(bob, "phone")
    # no delivery before initial presence
    await b.messages.assert_none(lambda m: m["body"].startswith("offline "), within=1.0,
                                 what="offline message before initial presence")
    await b.go_online()
    got = await b.messages.collect(4, lambda m: m["body"].startswith("offline "),
                                   what="offline messages")
    assert [m["body"] for m in got] == [f"offline {i}" for i in range(4)]
    for m in got:
        assert m["from"] == f"{alice.jid}/pc", m["from"]
        assert m["type"] == "chat"
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None, f"no <delay xmlns='{NS_DELAY}'/> on {m}"
        assert delay.get("from") == DOMAIN, f"delay from={delay.get('from')!r}"
        stamp = parse_stamp(delay.get("stamp"))
        assert stamp.tzinfo is not None, f"stamp without timezone: {delay.get('stamp')}"
        assert before <= stamp <= after, f"stamp {stamp} not within [{before}, {after}]"


async def test_offline_messages_are_delivered_only_once(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    a.send_msg(bob.jid, "once only")
    await a.sync()
    b = await clients(bob, "one")
    await b.go_online()
    await b.wait_message(lambda m: m["body"] == "once only")
    await b.logout()
    b2 = await clients(bob, "two")
    await b2.go_online()
    await b2.messages.assert_none(lambda m: m["body"] == "once only", within=1.5,
                                  what="an offline message delivered a second time")


async def test_message_to_full_jid_of_offline_account_is_stored(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    a.send_msg(f"{bob.jid}/was-here", "to a full jid")
    await a.sync()
    b = await clients(bob, "other")
    await b.go_online()
    m = await b.wait_message(lambda m: m["body"] == "to a full jid",
                             what="stored message sent to a full JID")
    assert m.xml.find(f"{{{NS_DELAY}}}delay") is not None


async def test_offline_limit_bounces_with_resource_constraint(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    for i in range(7):
        msg = a.make_message(mto=bob.jid, mbody=f"fill {i}", mtype="chat")
        msg["id"] = f"fill-{i}"
        msg.send()
    await a.sync()
    errors = await a.messages.collect(2, lambda m: m["type"] == "error", timeout=10,
                                      what="message errors for messages over the limit")
    assert sorted(e["id"] for e in errors) == ["fill-5", "fill-6"], [e["id"] for e in errors]
    for e in errors:
        assert stanza_error(e) == ("resource-constraint", "wait"), stanza_error(e)
    b = await clients(bob, "pc")
    await b.go_online()
    got = await b.messages.collect(5, lambda m: m["body"].startswith("fill "))
    assert [m["body"] for m in got] == [f"fill {i}" for i in range(5)]
    await b.messages.assert_none(lambda m: m["body"].startswith("fill "), within=1.0,
                                 what="more than offline_limit stored messages")


async def test_offline_space_freed_after_delivery(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await clients(alice, "pc")
    for i in range(5):
        a.send_msg(bob.jid, f"round1 {i}")
    await a.sync()
    b = await clients(bob, "pc")
    await b.go_online()
    await b.messages.collect(5, lambda m: m["body"].startswith("round1 "))
    await b.logout()
    for i in range(5):
        a.send_msg(bob.jid, f"round2 {i}")
    await a.sync()
    await a.messages.assert_none(lambda m: m["type"] == "error", within=1.0,
                                 what="a bounce although delivered messages freed the space")
    b2 = await clients(bob, "pc2")
    await b2.go_online()
    got = await b2.messages.collect(5, lambda m: m["body"].startswith("round2 "))
    assert [m["body"] for m in got] == [f"round2 {i}" for i in range(5)]
