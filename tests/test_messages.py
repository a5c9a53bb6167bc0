"""Message and IQ routing between local users (RFC 6120 §8, RFC 6121 §8).

Covers: messages to a full JID, to a bare JID (delivered to all resources
with the highest non-negative priority, and only to them), ordering of 50
chat messages, error replies for unknown accounts and unavailable full JIDs
(service-unavailable), a message to a vanished resource being treated as
sent to the bare JID, the sender address being stamped by the server (no
spoofing), JID case-insensitivity and a large (but allowed) stanza.
"""

import asyncio

from rampart_harness import DOMAIN, NS_PING, stanza_error


async def online(clients, user, resource, priority=None):
    c = await clients(user, resource)
    await c.go_online(priority=priority)
    return c


async def test_message_to_full_jid(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "phone")
    ca.send_msg(f"{b.jid}/phone", "hello bob")
    m = await cb.wait_message(lambda m: m["body"] == "hello bob")
    assert m["from"] == f"{a.jid}/pc", f"from is {m['from']}"
    assert m["to"] == f"{b.jid}/phone"
    assert m["type"] == "chat"


async def test_message_to_bare_jid_goes_to_highest_priority(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    low = await online(clients, b, "low", priority=1)
    high = await online(clients, b, "high", priority=10)
    ca.send_msg(b.jid, "to the bare jid")
    m = await high.wait_message(lambda m: m["body"] == "to the bare jid")
    assert m["from"] == f"{a.jid}/pc"
    await low.messages.assert_none(lambda m: m["body"] == "to the bare jid",
                                   what="message on the lower-priority resource")


async def test_message_to_bare_jid_goes_to_all_resources_with_equal_top_priority(
        server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    r1 = await online(clients, b, "one", priority=5)
    r2 = await online(clients, b, "two", priority=5)
    r3 = await online(clients, b, "three", priority=0)
    ca.send_msg(b.jid, "to both top resources")
    await r1.wait_message(lambda m: m["body"] == "to both top resources",
                          what="message on resource 'one' (priority 5)")
    await r2.wait_message(lambda m: m["body"] == "to both top resources",
                          what="message on resource 'two' (priority 5)")
    await r3.messages.assert_none(lambda m: m["body"] == "to both top resources",
                                  what="message on resource 'three' (priority 0)")


async def test_negative_priority_resource_does_not_get_bare_jid_messages(
        server, new_user, clients):
    """RFC 6121 §8.5.2.1.1: if all available resources have negative
    priority, the message is handled as if there were none (stored offline),
    and delivered when a resource sends non-negative available presence."""
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    neg = await online(clients, b, "neg", priority=-1)
    ca.send_msg(b.jid, "not for negative priority")
    await neg.messages.assert_none(lambda m: m["body"] == "not for negative priority",
                                   what="bare-JID message on a priority -1 resource")
    later = await clients(b, "later")
    await later.go_online(priority=1)
    await later.wait_message(lambda m: m["body"] == "not for negative priority",
                             what="the stored message on the next non-negative resource")


async def test_fifty_chat_messages_arrive_in_order(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    for i in range(50):
        ca.send_msg(f"{b.jid}/pc", f"seq {i}")
    got = await cb.messages.collect(50, lambda m: m["body"].startswith("seq "), timeout=20,
                                    what="numbered chat messages")
    assert [m["body"] for m in got] == [f"seq {i}" for i in range(50)]


async def test_fifty_messages_to_bare_jid_arrive_in_order(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    for i in range(50):
        ca.send_msg(b.jid, f"bare {i}")
    got = await cb.messages.collect(50, lambda m: m["body"].startswith("bare "), timeout=20,
                                    what="numbered chat messages")
    assert [m["body"] for m in got] == [f"bare {i}" for i in range(50)]


async def test_message_to_unknown_local_account_bounces(server, new_user, clients):
    a = new_user("alice")
    ca = await online(clients, a, "pc")
    ghost = server.unknown_user()
    msg = ca.make_message(mto=ghost.jid, mbody="anyone there?", mtype="chat")
    msg["id"] = "bounce-1"
    msg.send()
    err = await ca.wait_message(lambda m: m["type"] == "error", what="a message error")
    assert stanza_error(err)[0] == "service-unavailable", f"got {err}"
    assert err["from"].bare == ghost.jid
    assert err["id"] == "bounce-1"


async def test_message_to_unknown_account_full_jid_bounces(server, new_user, clients):
    a = new_user("alice")
    ca = await online(clients, a, "pc")
    ghost = server.unknown_user()
    ca.send_msg(f"{ghost.jid}/res", "anyone there?")
    err = await ca.wait_message(lambda m: m["type"] == "error", what="a message error")
    assert stanza_error(err)[0] == "service-unavailable", f"got {err}"


async def test_iq_to_unavailable_full_jid_is_service_unavailable(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    resp = await ca.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{b.jid}/nowhere")
    assert resp["type"] == "error", f"got {resp}"
    assert stanza_error(resp)[0] == "service-unavailable", f"got {resp}"


async def test_iq_to_available_full_jid_is_routed(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    cb.register_plugin("xep_0199")  # answers pings
    resp = await ca.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{b.jid}/pc")
    assert resp["type"] == "result", f"got {resp}"
    assert resp["from"] == f"{b.jid}/pc"


async def test_message_to_vanished_resource_goes_to_bare_jid(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "home")
    ca.send_msg(f"{b.jid}/gone-away", "resource is gone")
    m = await cb.wait_message(lambda m: m["body"] == "resource is gone",
                              what="the message on the remaining resource")
    assert m["from"] == f"{a.jid}/pc"


async def test_message_to_own_other_resource(server, new_user, clients):
    u = new_user("self")
    c1 = await online(clients, u, "one")
    c2 = await online(clients, u, "two")
    c1.send_msg(f"{u.jid}/two", "note to self")
    m = await c2.wait_message(lambda m: m["body"] == "note to self")
    assert m["from"] == f"{u.jid}/one"


async def test_spoofed_from_is_not_delivered_as_is(server, new_user, clients):
    """RFC 6120 §8.1.2.1: the server stamps the sender's full JID; a client
    cannot make a message appear to come from someone else."""
    a, b, victim = new_user("alice"), new_user("bob"), new_user("victim")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    ca.send_raw(f"<message from='{victim.jid}/x' to='{b.jid}/pc' type='chat'>"
                f"<body>spoofed</body></message>")
    await asyncio.sleep(1.5)
    for m in cb.messages.unconsumed(lambda m: m["body"] == "spoofed"):
        assert m["from"] == f"{a.jid}/pc", f"spoofed sender delivered: from={m['from']}"


async def test_jid_localpart_and_domain_are_case_insensitive(server, new_user, clients):
    """RFC 7622: localpart and domainpart are case-mapped for comparison."""
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    ca.send_raw(f"<message to='{b.localpart.upper()}@{DOMAIN.upper()}/pc' type='chat'>"
                f"<body>shouting</body></message>")
    await cb.wait_message(lambda m: m["body"] == "shouting",
                          what="message addressed with an upper-case JID")


async def test_large_message_below_limit_is_delivered(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    body = "x" * 150_000  # well below the default 262144-byte stanza limit
    ca.send_msg(f"{b.jid}/pc", body)
    m = await cb.wait_message(lambda m: len(m["body"]) > 1000, timeout=20)
    assert m["body"] == body


async def test_headline_and_normal_message_types_preserved(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    ca.send_msg(f"{b.jid}/pc", "a normal one", mtype="normal")
    ca.send_msg(f"{b.jid}/pc", "a headline", mtype="headline")
    m1 = await cb.wait_message(lambda m: m["body"] == "a normal one")
    m2 = await cb.wait_message(lambda m: m["body"] == "a headline")
    assert m1["type"] == "normal"
    assert m2["type"] == "headline"


async def test_message_with_custom_payload_is_forwarded_intact(server, new_user, clients):
    a, b = new_user("alice"), new_user("bob")
    ca = await online(clients, a, "pc")
    cb = await online(clients, b, "pc")
    nested = "".join(f"<n{i}>" for i in range(12)) + "deep" + "".join(
        f"</n{i}>" for i in reversed(range(12)))
    ca.send_raw(f"<message to='{b.jid}/pc' type='chat' id='payload1'><body>with payload</body>"
                f"<x xmlns='urn:example:payload' attr='&lt;v&gt;'>{nested}</x></message>")
    m = await cb.wait_message(lambda m: m["body"] == "with payload")
    x = m.xml.find("{urn:example:payload}x")
    assert x is not None, f"custom payload dropped: {m}"
    assert x.get("attr") == "<v>"
    assert "".join(x.itertext()) == "deep"
