"""Resource binding and sessions (RFC 6120 §7, RFC 6121 §4.2-4.3).

Covers: a server-generated resource when the client asks for none, the
requested resource when it asks for one, the resource conflict rule (the
older session gets stream error <conflict/> and is closed, the new session
works), several resources of one account at once, and the initial presence
being reflected to the sending resource.
"""

from rampart_harness import NS_BIND, RawXMPP


async def test_server_generates_resource_when_none_requested(server, new_user, clients):
    u = new_user("gen")
    c = await clients(u)
    assert c.boundjid.bare == u.jid
    assert c.boundjid.resource, f"no resource in bound JID {c.boundjid.full}"


async def test_generated_resources_are_unique(server, new_user, clients):
    u = new_user("gen2")
    c1 = await clients(u)
    c2 = await clients(u)
    assert c1.boundjid.resource != c2.boundjid.resource
    # both sessions are alive
    await c1.ping_server()
    await c2.ping_server()


async def test_requested_resource_is_bound(server, new_user, clients):
    u = new_user("res")
    c = await clients(u, "laptop")
    assert c.boundjid.full == f"{u.jid}/laptop"


async def test_resource_conflict_kicks_old_session(server, new_user, clients):
    u, peer = new_user("confl"), new_user("peer")
    old = await clients(u, "desk")
    await old.go_online()
    new = await clients(u, "desk")
    assert new.boundjid.full == f"{u.jid}/desk"

    assert await old.wait_disconnected(10), "the old session was not closed"
    assert "conflict" in old.stream_error_conditions, \
        f"old session got stream errors {old.stream_error_conditions}, expected conflict"

    # the new session is the one that works
    await new.go_online()
    p = await clients(peer, "p")
    p.send_msg(f"{u.jid}/desk", "to the new session")
    m = await new.wait_message(lambda m: m["body"] == "to the new session")
    assert m["from"] == p.boundjid.full


async def test_multiple_resources_receive_their_own_messages(server, new_user, clients):
    u, peer = new_user("multi"), new_user("peer")
    a = await clients(u, "a")
    b = await clients(u, "b")
    await a.go_online()
    await b.go_online()
    p = await clients(peer, "p")
    p.send_msg(f"{u.jid}/a", "for a")
    p.send_msg(f"{u.jid}/b", "for b")
    ma = await a.wait_message(lambda m: m["body"].startswith("for "))
    mb = await b.wait_message(lambda m: m["body"].startswith("for "))
    assert ma["body"] == "for a"
    assert mb["body"] == "for b"
    assert ma["to"] == f"{u.jid}/a"


async def test_initial_presence_reflected_to_sender_and_other_resources(server, new_user, clients):
    """RFC 6121 §4.2.2: initial presence goes to all of the user's available
    resources, including the one that sent it."""
    u = new_user("refl")
    a = await clients(u, "a")
    await a.go_online()
    await a.wait_presence(lambda p: p["from"] == f"{u.jid}/a" and p.xml.get("type") is None,
                          what="own initial presence reflected")
    b = await clients(u, "b")
    b.send_presence(pstatus="hello from b")
    await a.wait_presence(lambda p: p["from"] == f"{u.jid}/b" and p["status"] == "hello from b",
                          what="presence of the other resource b")
    await b.wait_presence(lambda p: p["from"] == f"{u.jid}/b",
                          what="b's own initial presence reflected")
    # and b learns about a (RFC 6121 §4.2.2: presence of other resources)
    await b.wait_presence(lambda p: p["from"] == f"{u.jid}/a",
                          what="presence of the other resource a")


async def test_other_resource_sees_unavailable_when_one_logs_out(server, new_user, clients):
    u = new_user("bye")
    a = await clients(u, "a")
    b = await clients(u, "b")
    await a.go_online()
    await b.go_online()
    await b.logout()
    p = await a.wait_presence(lambda p: p["from"] == f"{u.jid}/b" and p.xml.get("type") == "unavailable",
                              what="unavailable from the resource that logged out")
    assert p["to"].bare == u.jid


def test_bind_before_auth_is_refused(server):
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.send(f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>x</resource></bind></iq>")
        el = raw.next_element(5)
        # either an error reply or a stream error -- but never a bound JID
        if el is not None and el.tag.endswith("}iq"):
            assert el.get("type") == "error", "resource bound without authentication!"
        else:
            raw.read_until_close(5)
            assert raw.stream_error() is not None, raw.describe()
    finally:
        raw.close()
