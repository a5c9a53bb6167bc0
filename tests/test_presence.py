"""Presence subscriptions and presence exchange (RFC 6121 §3-§4).

Covers: subscribe -> the contact gets the request (also when offline, on
the next login); subscribed -> both rosters updated (to/from/both) and the
contact's presence delivered; mutual subscription; unsubscribe and
unsubscribed; roster removal cancelling both directions; pre-approval
(subscribed before the request -> a later subscribe is auto-approved);
contacts' presence on login/logout and presence changes; directed presence
to a non-contact and the unavailable that follows when the sender goes.
"""

from rampart_harness import item_groups, roster_items


def is_pres(frm, ptype="available"):
    def pred(p):
        f = p["from"]
        match = (f == frm) if "/" in frm else (f.bare == frm)
        t = p.xml.get("type")  # slixmpp's p["type"] folds <show/> into the type
        return match and ((t in (None, "")) if ptype == "available" else t == ptype)
    return pred


def push_for(jid, subscription=None, ask=None):
    def pred(push):
        item = roster_items(push).get(jid)
        if item is None:
            return False
        if subscription is not None and item.get("subscription") != subscription:
            return False
        if ask is not None and item.get("ask") != ask:
            return False
        return True
    return pred


async def online(clients, user, resource="pc", priority=None, roster=True):
    c = await clients(user, resource)
    if roster:
        await c.roster_get()  # become an "interested resource" for pushes
    await c.go_online(priority=priority)
    return c


async def subscribe_to(a, a_user, b, b_user):
    """a subscribes to b's presence and b approves; returns when both sides
    have seen the roster pushes."""
    a.send_presence(pto=b_user.jid, ptype="subscribe")
    await b.wait_presence(is_pres(a_user.jid, "subscribe"), what="subscription request")
    b.send_presence(pto=a_user.jid, ptype="subscribed")
    await a.roster_pushes.wait_for(lambda p: roster_items(p).get(b_user.jid) is not None
                                   and roster_items(p)[b_user.jid].get("subscription") in ("to", "both"),
                                   what=f"push with subscription to/both for {b_user.jid}")
    await b.roster_pushes.wait_for(lambda p: roster_items(p).get(a_user.jid) is not None
                                   and roster_items(p)[a_user.jid].get("subscription") in ("from", "both"),
                                   what=f"push with subscription from/both for {a_user.jid}")


async def test_subscribe_request_and_approval(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)

    a.send_presence(pto=bob.jid, ptype="subscribe")
    # alice's roster: bob, subscription none, ask=subscribe
    await a.roster_pushes.wait_for(push_for(bob.jid, "none", "subscribe"),
                                   what="alice's push: bob none + ask=subscribe")
    req = await b.wait_presence(is_pres(alice.jid, "subscribe"), what="subscribe from alice")
    assert req["from"] == alice.jid, f"subscribe must come from the bare JID, got {req['from']}"

    b.send_presence(pto=alice.jid, ptype="subscribed")
    await b.roster_pushes.wait_for(push_for(alice.jid, "from"),
                                   what="bob's push: alice subscription=from")
    push = await a.roster_pushes.wait_for(push_for(bob.jid, "to"),
                                          what="alice's push: bob subscription=to")
    assert roster_items(push)[bob.jid].get("ask") is None
    await a.wait_presence(is_pres(bob.jid, "subscribed"), what="subscribed from bob")
    # bob's current presence is delivered to alice once she is subscribed
    await a.wait_presence(is_pres(f"{bob.jid}/pc"), what="bob's available presence")

    ra = roster_items(await a.roster_get())
    rb = roster_items(await b.roster_get())
    assert ra[bob.jid].get("subscription") == "to"
    assert rb[alice.jid].get("subscription") == "from"


async def test_mutual_subscription_is_both(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    await subscribe_to(a, alice, b, bob)
    await subscribe_to(b, bob, a, alice)
    assert roster_items(await a.roster_get())[bob.jid].get("subscription") == "both"
    assert roster_items(await b.roster_get())[alice.jid].get("subscription") == "both"


async def test_subscription_request_to_offline_contact_delivered_on_login(
        server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    a.send_presence(pto=bob.jid, ptype="subscribe")
    await a.roster_pushes.wait_for(push_for(bob.jid, "none", "subscribe"))
    b = await online(clients, bob)
    await b.wait_presence(is_pres(alice.jid, "subscribe"),
                          what="stored subscription request after bob came online")
    b.send_presence(pto=alice.jid, ptype="subscribed")
    await a.roster_pushes.wait_for(push_for(bob.jid, "to"))


async def test_contact_presence_on_login_and_logout(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob, "first")
    await subscribe_to(a, alice, b, bob)

    # bob comes online with another resource -> alice sees it
    b2 = await clients(bob, "second")
    b2.send_presence(pshow="away", pstatus="brb")
    p = await a.wait_presence(is_pres(f"{bob.jid}/second"), what="bob/second available")
    assert p["show"] == "away" and p["status"] == "brb"

    # presence change is broadcast
    b2.send_presence(pshow="dnd", pstatus="busy now")
    p = await a.wait_presence(lambda p: p["from"] == f"{bob.jid}/second" and p["show"] == "dnd",
                              what="bob/second presence update")
    assert p["status"] == "busy now"

    # bob/second drops its connection without saying goodbye
    b2.kill()
    await a.wait_presence(is_pres(f"{bob.jid}/second", "unavailable"),
                          what="unavailable for bob/second after its connection dropped")

    # bob/first logs out politely
    await b.logout()
    await a.wait_presence(is_pres(f"{bob.jid}/first", "unavailable"),
                          what="unavailable for bob/first after logout")


async def test_login_receives_presence_of_online_contacts(server, new_user, clients):
    """The server probes the user's contacts when the user comes online."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob, "home")
    await subscribe_to(a, alice, b, bob)
    b.send_presence(pstatus="at home")
    await a.logout()

    a2 = await clients(alice, "again")
    await a2.roster_get()
    a2.send_presence()
    p = await a2.wait_presence(is_pres(f"{bob.jid}/home"),
                               what="bob's presence after alice's initial presence")
    assert p["status"] == "at home"


async def test_no_presence_without_subscription(server, new_user, clients):
    alice, eve = new_user("alice"), new_user("eve")
    a = await online(clients, alice)
    await online(clients, eve, "e")
    e2 = await clients(eve, "e2")
    e2.send_presence(pstatus="can you see me?")
    await a.presences.assert_none(lambda p: p["from"].bare == eve.jid, within=1.5,
                                  what="presence from a non-contact")


async def test_unsubscribe(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    await subscribe_to(a, alice, b, bob)
    await a.wait_presence(is_pres(f"{bob.jid}/pc"))

    a.send_presence(pto=bob.jid, ptype="unsubscribe")
    await a.roster_pushes.wait_for(push_for(bob.jid, "none"), what="alice's push: bob none")
    await b.roster_pushes.wait_for(push_for(alice.jid, "none"), what="bob's push: alice none")
    await b.wait_presence(is_pres(alice.jid, "unsubscribe"), what="unsubscribe at bob")
    # alice no longer sees bob: his server sends unavailable (RFC 6121 §3.3.3)
    await a.wait_presence(is_pres(f"{bob.jid}/pc", "unavailable"),
                          what="unavailable from bob after unsubscribing")


async def test_unsubscribed_cancels_contacts_subscription(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    await subscribe_to(a, alice, b, bob)
    await a.wait_presence(is_pres(f"{bob.jid}/pc"))

    b.send_presence(pto=alice.jid, ptype="unsubscribed")
    await b.roster_pushes.wait_for(push_for(alice.jid, "none"), what="bob's push: alice none")
    await a.roster_pushes.wait_for(push_for(bob.jid, "none"), what="alice's push: bob none")
    await a.wait_presence(is_pres(bob.jid, "unsubscribed"), what="unsubscribed at alice")
    await a.wait_presence(is_pres(f"{bob.jid}/pc", "unavailable"),
                          what="unavailable from bob after he cancelled")
    # and later presence changes of bob are not sent to alice
    b.send_presence(pstatus="after cancel")
    await a.presences.assert_none(lambda p: p["status"] == "after cancel",
                                  what="bob's presence after he cancelled the subscription")


async def test_roster_remove_cancels_both_directions(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    await subscribe_to(a, alice, b, bob)
    await subscribe_to(b, bob, a, alice)

    resp = await a.iq("set", f"<query xmlns='jabber:iq:roster'>"
                             f"<item jid='{bob.jid}' subscription='remove'/></query>")
    assert resp["type"] == "result", resp
    await a.roster_pushes.wait_for(push_for(bob.jid, "remove"), what="alice's push: remove")
    await b.roster_pushes.wait_for(push_for(alice.jid, "none"),
                                   what="bob's push: alice subscription none")
    await b.wait_presence(is_pres(alice.jid, "unsubscribe"), what="unsubscribe at bob")
    await b.wait_presence(is_pres(alice.jid, "unsubscribed"), what="unsubscribed at bob")
    await b.wait_presence(is_pres(f"{alice.jid}/pc", "unavailable"),
                          what="unavailable from alice at bob")
    assert bob.jid not in roster_items(await a.roster_get())


async def test_preapproval(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    b = await online(clients, bob)
    assert "preapproval" in b.features, \
        f"<sub xmlns='urn:xmpp:features:pre-approval'/> not advertised; features {b.features}"
    a = await online(clients, alice)

    # bob pre-approves alice before she asks
    b.send_presence(pto=alice.jid, ptype="subscribed")
    push = await b.roster_pushes.wait_for(push_for(alice.jid),
                                          what="bob's push for the pre-approved item")
    item = roster_items(push)[alice.jid]
    assert item.get("approved") == "true", f"pre-approved item: {item.attrib}"
    assert item.get("subscription") == "none"
    await a.presences.assert_none(is_pres(bob.jid, "subscribed"), within=1.0,
                                  what="'subscribed' at alice before she asked")

    # alice asks: auto-approved, bob never sees the request
    a.send_presence(pto=bob.jid, ptype="subscribe")
    await a.wait_presence(is_pres(bob.jid, "subscribed"), what="automatic approval")
    await a.roster_pushes.wait_for(push_for(bob.jid, "to"), what="alice's push: bob to")
    await b.roster_pushes.wait_for(push_for(alice.jid, "from"), what="bob's push: alice from")
    await a.wait_presence(is_pres(f"{bob.jid}/pc"), what="bob's presence after approval")
    await b.presences.assert_none(is_pres(alice.jid, "subscribe"), within=0.5,
                                  what="a subscription request despite pre-approval")


async def test_directed_presence_to_non_contact(server, new_user, clients):
    alice, carol = new_user("alice"), new_user("carol")
    a = await online(clients, alice)
    c = await online(clients, carol)
    a.send_presence(pto=f"{carol.jid}/pc", pstatus="just for you")
    p = await c.wait_presence(is_pres(f"{alice.jid}/pc"), what="directed presence")
    assert p["status"] == "just for you"
    await a.logout()
    await c.wait_presence(is_pres(f"{alice.jid}/pc", "unavailable"),
                          what="unavailable after the sender of directed presence left")


async def test_subscribe_keeps_roster_name_and_groups(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await online(clients, alice)
    b = await online(clients, bob)
    await a.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{bob.jid}' name='Bobby'>"
                      f"<group>Pals</group></item></query>")
    await subscribe_to(a, alice, b, bob)
    item = roster_items(await a.roster_get())[bob.jid]
    assert item.get("name") == "Bobby"
    assert item_groups(item) == {"Pals"}
    assert item.get("subscription") == "to"
