"""XEP-0060 explicit subscriptions and affiliations on PEP nodes (issue #7), over
real TLS with slixmpp's xep_0060 plugin (subscribe, unsubscribe,
get_subscriptions, get_affiliations, get_node_subscriptions,
modify_subscriptions, get_node_affiliations, modify_affiliations) plus raw
stanzas for the error paths XEP-0060 defines.

Covers: the account's disco#info features; subscribe (last item on subscribe,
notifications without +notify), the requester's subscriptions, unsubscribe;
subscribe errors (invalid-jid, presence-subscription-required,
not-in-roster-group, closed-node, item-not-found, subscription options);
owner affiliations (member readers of a whitelist node, outcasts blocked
even on an open node, publishers publishing to and retracting from the
owner's node, the publish on the record); owner subscription management;
persistence across a restart.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import test_pep
from rampart_harness import NS_DISCO_INFO, archive_search, stanza_error
from test_pep import (  # noqa: F401 (fresh_caps_memory: autouse fixture)
    NS_EVENT, NS_OWNER, NS_PUBSUB, events_of, fresh_caps_memory, item_ids, pep_client,
    publish_options, pubsub_err, subscribe_to, tune, wait_event,
)

NS_FEED = "urn:example:feed"


def subs_of(resp, ns=NS_PUBSUB):
    el = resp.xml.find(f"{{{ns}}}pubsub/{{{ns}}}subscriptions")
    assert el is not None, resp
    return [(s.get("node"), s.get("jid"), s.get("subscription")) for s in el.findall(f"{{{ns}}}subscription")]


def affs_of(resp, ns=NS_OWNER):
    el = resp.xml.find(f"{{{ns}}}pubsub/{{{ns}}}affiliations")
    assert el is not None, resp
    return {(a.get("jid") or a.get("node")): a.get("affiliation") for a in el.findall(f"{{{ns}}}affiliation")}


async def no_event(c, node, before, wait=1.5):
    await asyncio.sleep(wait)
    assert len(events_of(c, node)) == before, [ET.tostring(e) for e in events_of(c, node)]


async def test_account_disco_lists_subscription_and_affiliation_features(server, new_user, clients):
    u = new_user("disco")
    c = await pep_client(clients, u)
    resp = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=u.jid)
    feats = {f.get("var") for f in resp.xml.findall(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}feature")}
    for f in ["subscribe", "retrieve-subscriptions", "manage-subscriptions", "modify-affiliations",
              "retrieve-affiliations", "member-affiliation", "outcast-affiliation", "publisher-affiliation"]:
        assert f"{NS_PUBSUB}#{f}" in feats, f
    # Not implemented, so not advertised.
    for f in ["subscription-options", "publish-only-affiliation", "collections", "access-authorize"]:
        assert f"{NS_PUBSUB}#{f}" not in feats, f


async def test_subscribe_last_item_notifications_and_unsubscribe(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice)
    # Bob has no presence subscription and no +notify: only his explicit subscription counts.
    b = await pep_client(clients, bob)
    ps = a.plugin["xep_0060"]
    r = await ps.publish(None, NS_FEED, id="first", payload=tune("first"), options=publish_options(access_model="open"))
    assert r["type"] == "result"

    r = await b.plugin["xep_0060"].subscribe(alice.jid, NS_FEED)
    sub = r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
    assert sub is not None and sub.get("subscription") == "subscribed", r
    assert sub.get("jid") == bob.jid and sub.get("node") == NS_FEED and sub.get("subid")
    # §6.1.7: the last item on subscribe.
    ev = await wait_event(b, NS_FEED, what="last item on subscribe")
    assert item_ids(ev) == ["first"]
    # Subscribing again is idempotent (same subscription).
    r = await b.plugin["xep_0060"].subscribe(alice.jid, NS_FEED)
    assert r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription").get("subid") == sub.get("subid")

    # New items reach the subscriber.
    await ps.publish(None, NS_FEED, id="second", payload=tune("second"))
    ev = await wait_event(b, NS_FEED, lambda e: "second" in item_ids(e), what="notification to the subscriber")
    msg = [m for m in b.events][-1]
    assert msg["from"] == alice.jid and msg["type"] == "headline"

    # The requester's subscriptions, at the service and per node.
    r = await b.plugin["xep_0060"].get_subscriptions(alice.jid)
    assert subs_of(r) == [(NS_FEED, bob.jid, "subscribed")]
    await ps.publish(None, "urn:example:other", id="x", payload=tune("x"), options=publish_options(access_model="open"))
    r = await b.plugin["xep_0060"].get_subscriptions(alice.jid, node="urn:example:other")
    assert subs_of(r) == []
    resp = await b.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><subscriptions node='urn:example:none'/></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "item-not-found"
    # A full-JID subscription of a second resource gets its own copy.
    b2 = await pep_client(clients, bob, resource="phone")
    r = await b2.plugin["xep_0060"].subscribe(alice.jid, NS_FEED, bare=False)
    assert r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription").get("jid") == str(b2.boundjid)
    r = await b.plugin["xep_0060"].get_subscriptions(alice.jid, node=NS_FEED)
    assert sorted(s[1] for s in subs_of(r)) == sorted([bob.jid, str(b2.boundjid)])

    # Unsubscribe the bare JID: the bare-JID copies stop, the phone's own subscription stays.
    r = await b.plugin["xep_0060"].unsubscribe(alice.jid, NS_FEED)
    assert r["type"] == "result"
    before = len(events_of(b, NS_FEED))
    await ps.publish(None, NS_FEED, id="third", payload=tune("third"))
    await wait_event(b2, NS_FEED, lambda e: "third" in item_ids(e), what="notification to the full-JID subscriber")
    await no_event(b, NS_FEED, before)
    # §6.2.3.2: not subscribed.
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><unsubscribe node='{NS_FEED}' jid='{bob.jid}'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("unexpected-request", "not-subscribed")
    # §6.2.3.5: a subid that is not the subscription's.
    resp = await b2.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><unsubscribe node='{NS_FEED}' jid='{b2.boundjid}' subid='nope'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("not-acceptable", "invalid-subid")


async def test_subscriber_gets_the_last_item_when_available(server, new_user, clients):
    """send_last_published_item=on_sub_and_presence (the default): an explicit
    subscriber that comes online gets the node's last item; with `never` it does not."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    ps = a.plugin["xep_0060"]
    quiet = "urn:example:quiet"
    await ps.publish(None, NS_FEED, id="v1", payload=tune("v1"), options=publish_options(access_model="open"))
    await ps.publish(None, quiet, id="q1", payload=tune("q1"),
                     options=publish_options(access_model="open", send_last_published_item="never"))
    for node in (NS_FEED, quiet):
        r = await b.plugin["xep_0060"].subscribe(alice.jid, node)
        assert r["type"] == "result"
    await wait_event(b, NS_FEED, what="last item on subscribe")
    await b.logout()
    await ps.publish(None, NS_FEED, id="v2", payload=tune("v2"))
    await ps.publish(None, quiet, id="q2", payload=tune("q2"))

    b = await pep_client(clients, bob, resource="laptop")
    ev = await wait_event(b, NS_FEED, what="last item when the subscriber became available")
    assert item_ids(ev) == ["v2"]
    await no_event(b, quiet, 0)
    # Once per availability: another presence update sends nothing new.
    before = len(events_of(b, NS_FEED))
    b.send_presence(pstatus="still here")
    await no_event(b, NS_FEED, before)


async def test_subscribe_error_paths(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    ps = a.plugin["xep_0060"]
    await ps.publish(None, "urn:example:presence", id="p", payload=tune("p"))
    await ps.publish(None, "urn:example:roster", id="r", payload=tune("r"), options=publish_options(access_model="roster"))
    await ps.publish(None, "urn:example:white", id="w", payload=tune("w"), options=publish_options(access_model="whitelist"))
    await ps.publish(None, "urn:example:open", id="o", payload=tune("o"), options=publish_options(access_model="open"))

    def sub(node, jid, extra=""):
        return f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{node}' jid='{jid}'/>{extra}</pubsub>"

    # §6.1.3.1: the jid must be the requester's own.
    resp = await b.iq("set", sub("urn:example:open", carol.jid), to=alice.jid)
    assert pubsub_err(resp) == ("bad-request", "invalid-jid")
    resp = await b.iq("set", sub("urn:example:open", f"{bob.jid}/someone-else"), to=alice.jid)
    assert pubsub_err(resp) == ("bad-request", "invalid-jid")
    # §6.1.3.2-4: the access models.
    resp = await b.iq("set", sub("urn:example:presence", bob.jid), to=alice.jid)
    assert pubsub_err(resp) == ("not-authorized", "presence-subscription-required")
    resp = await b.iq("set", sub("urn:example:roster", bob.jid), to=alice.jid)
    assert pubsub_err(resp) == ("not-authorized", "not-in-roster-group")
    resp = await b.iq("set", sub("urn:example:white", bob.jid), to=alice.jid)
    assert pubsub_err(resp) == ("not-allowed", "closed-node")
    # §6.1.3.12: no such node.
    resp = await b.iq("set", sub("urn:example:none", bob.jid), to=alice.jid)
    assert stanza_error(resp)[0] == "item-not-found"
    # Subscription options are not implemented (§6.3, §6.4), and say so.
    resp = await b.iq("set", sub("urn:example:open", bob.jid, "<options/>"), to=alice.jid)
    assert pubsub_err(resp) == ("feature-not-implemented", "unsupported")
    assert resp.xml.find(f".//{{{test_pep.NS_ERRORS}}}unsupported").get("feature") == "subscription-options"
    resp = await b.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><options node='urn:example:open' jid='{bob.jid}'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("feature-not-implemented", "unsupported")
    resp = await b.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><default node='urn:example:open'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("feature-not-implemented", "unsupported")
    # Once Bob sees Alice's presence, the presence node is his to subscribe to.
    await subscribe_to(b, bob, a, alice)
    r = await b.plugin["xep_0060"].subscribe(alice.jid, "urn:example:presence")
    assert r["type"] == "result"
    # Only the owner manages the node's subscriptions and affiliations.
    resp = await b.iq("get", f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='urn:example:open'/></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden", resp
    resp = await b.iq("set", f"<pubsub xmlns='{NS_OWNER}'><affiliations node='urn:example:open'>"
                             f"<affiliation jid='{bob.jid}' affiliation='publisher'/></affiliations></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden", resp
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='urn:example:open'><item><tune xmlns='http://jabber.org/protocol/tune'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"


async def test_owner_affiliations_member_whitelist_and_outcast(server, new_user, clients):
    alice, bob, mallory = new_user("alice"), new_user("bob"), new_user("mallory")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    m = await pep_client(clients, mallory)
    ps = a.plugin["xep_0060"]
    white, opened = "urn:example:private", "urn:example:public"
    await ps.publish(None, white, id="w1", payload=tune("w1"), options=publish_options(access_model="whitelist"))
    await ps.publish(None, opened, id="o1", payload=tune("o1"), options=publish_options(access_model="open"))

    resp = await b.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{white}'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("not-allowed", "closed-node")

    # The owner grants Bob read access to the whitelist node and blocks Mallory on the open one.
    r = await ps.modify_affiliations(None, white, [(bob.jid, "member")])
    assert r["type"] == "result"
    r = await ps.modify_affiliations(None, opened, [(mallory.jid, "outcast")])
    assert r["type"] == "result"
    r = await ps.get_node_affiliations(None, white)
    assert affs_of(r) == {alice.jid: "owner", bob.jid: "member"}
    r = await ps.get_node_affiliations(None, opened)
    assert affs_of(r) == {alice.jid: "owner", mallory.jid: "outcast"}

    # The member reads and subscribes; the last item and new items reach him.
    r = await b.plugin["xep_0060"].get_items(alice.jid, white)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["w1"]
    r = await b.plugin["xep_0060"].subscribe(alice.jid, white)
    assert r["type"] == "result"
    await wait_event(b, white, lambda e: "w1" in item_ids(e), what="last item for the member")
    await ps.publish(None, white, id="w2", payload=tune("w2"))
    await wait_event(b, white, lambda e: "w2" in item_ids(e), what="member notification")
    # The requester's own affiliations at Alice's service.
    r = await b.plugin["xep_0060"].get_affiliations(alice.jid)
    assert affs_of(r, NS_PUBSUB) == {white: "member"}
    r = await a.plugin["xep_0060"].get_affiliations(None)
    own = affs_of(r, NS_PUBSUB)
    assert own[white] == "owner" and own[opened] == "owner"

    # The outcast is refused even on an open node.
    resp = await m.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{opened}'/></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    resp = await m.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{opened}' jid='{mallory.jid}'/></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    # ... but only on that node.
    resp = await m.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{white}'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("not-allowed", "closed-node")

    # Taking membership away: Bob reads nothing and is no longer notified.
    r = await ps.modify_affiliations(None, white, [(bob.jid, "none")])
    assert r["type"] == "result"
    resp = await b.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{white}'/></pubsub>", to=alice.jid)
    assert pubsub_err(resp) == ("not-allowed", "closed-node")
    before = len(events_of(b, white))
    await ps.publish(None, white, id="w3", payload=tune("w3"))
    await no_event(b, white, before)

    # §8.9.2.4 and friends: errors.
    def modify(node, jid, aff):
        return (f"<pubsub xmlns='{NS_OWNER}'><affiliations node='{node}'>"
                f"<affiliation jid='{jid}' affiliation='{aff}'/></affiliations></pubsub>")
    resp = await a.iq("set", modify(white, alice.jid, "none"))
    assert stanza_error(resp)[0] == "not-acceptable"
    resp = await a.iq("set", modify(white, bob.jid, "owner"))
    assert stanza_error(resp)[0] == "not-acceptable"
    resp = await a.iq("set", modify(white, bob.jid, "publish-only"))
    assert pubsub_err(resp) == ("feature-not-implemented", "unsupported")
    resp = await a.iq("set", modify(white, bob.jid, "emperor"))
    assert stanza_error(resp)[0] == "not-acceptable"
    resp = await a.iq("set", modify("urn:example:none", bob.jid, "member"))
    assert stanza_error(resp)[0] == "item-not-found"
    # A rejected list changes nothing (checked whole before applying).
    resp = await a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><affiliations node='{white}'>"
                             f"<affiliation jid='{bob.jid}' affiliation='member'/>"
                             f"<affiliation jid='{mallory.jid}' affiliation='emperor'/></affiliations></pubsub>")
    assert stanza_error(resp)[0] == "not-acceptable"
    r = await ps.get_node_affiliations(None, white)
    assert affs_of(r) == {alice.jid: "owner"}


async def test_owner_manages_subscriptions_and_outcast_loses_them(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    await pep_client(clients, carol)
    ps = a.plugin["xep_0060"]
    node = "urn:example:managed"
    await ps.publish(None, node, id="m1", payload=tune("m1"), options=publish_options(access_model="open"))
    await ps.publish(None, "urn:example:closed", id="c1", payload=tune("c1"))

    r = await ps.modify_subscriptions(None, node, [(bob.jid, "subscribed")])
    assert r["type"] == "result"
    r = await ps.get_node_subscriptions(None, node)
    assert subs_of(r, NS_OWNER) == [(None, bob.jid, "subscribed")]
    await ps.publish(None, node, id="m2", payload=tune("m2"))
    await wait_event(b, node, lambda e: "m2" in item_ids(e), what="notification after the owner subscribed Bob")
    # Bob sees the subscription the owner made as his own.
    r = await b.plugin["xep_0060"].get_subscriptions(alice.jid)
    assert subs_of(r) == [(node, bob.jid, "subscribed")]

    r = await ps.modify_subscriptions(None, node, [(bob.jid, "none")])
    assert r["type"] == "result"
    r = await ps.get_node_subscriptions(None, node)
    assert subs_of(r, NS_OWNER) == []

    # The owner cannot subscribe someone who may not see the node (presence model, no
    # presence subscription), nor a JID that is not a local account.
    resp = await a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='urn:example:closed'>"
                             f"<subscription jid='{carol.jid}' subscription='subscribed'/></subscriptions></pubsub>")
    assert stanza_error(resp)[0] == "not-acceptable"
    resp = await a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><subscriptions node='{node}'>"
                             f"<subscription jid='someone@elsewhere.example' subscription='subscribed'/></subscriptions></pubsub>")
    assert stanza_error(resp)[0] == "not-acceptable"

    # Outcasting a subscriber removes its subscriptions to the node.
    r = await b.plugin["xep_0060"].subscribe(alice.jid, node)
    assert r["type"] == "result"
    r = await ps.modify_affiliations(None, node, [(bob.jid, "outcast")])
    assert r["type"] == "result"
    r = await ps.get_node_subscriptions(None, node)
    assert subs_of(r, NS_OWNER) == []
    before = len(events_of(b, node))
    await ps.publish(None, node, id="m3", payload=tune("m3"))
    await no_event(b, node, before)

    # Deleting the node tells its subscribers, then their subscriptions are gone with it.
    r = await ps.modify_affiliations(None, node, [(bob.jid, "none")])
    r = await b.plugin["xep_0060"].subscribe(alice.jid, node)
    assert r["type"] == "result"
    r = await ps.delete_node(None, node)
    assert r["type"] == "result"
    deadline = asyncio.get_running_loop().time() + 15
    while not any(m.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}delete") is not None for m in b.events):
        assert asyncio.get_running_loop().time() < deadline, "no delete notification for the subscriber"
        await asyncio.sleep(0.05)
    r = await b.plugin["xep_0060"].get_subscriptions(alice.jid)
    assert subs_of(r) == []


async def test_publisher_publishes_to_the_owners_node(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await pep_client(clients, alice, interests=["urn:example:team"])
    b = await pep_client(clients, bob)
    c = await pep_client(clients, carol)
    ps = a.plugin["xep_0060"]
    node = "urn:example:team"
    await ps.publish(None, node, id="a1", payload=tune("from alice"), options=publish_options(access_model="whitelist", max_items="10"))
    r = await ps.modify_affiliations(None, node, [(bob.jid, "publisher")])
    assert r["type"] == "result"

    r = await b.plugin["xep_0060"].publish(alice.jid, node, id="b1", payload=tune("Team tune from Bob"))
    assert r["type"] == "result"
    ev = await wait_event(a, node, lambda e: "b1" in item_ids(e), what="the publisher's item at the owner")
    assert ev.find(f"{{{NS_EVENT}}}item").get("publisher", "").startswith(bob.jid)
    r = await ps.get_items(None, node)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["b1", "a1"]
    # The publish passed the guard and is on the record, from Bob to Alice.
    recs = [x for x in archive_search(server, "Team") if x.get("kind") == "publish"]
    assert recs and recs[0]["from"].startswith(bob.jid) and recs[0]["to"] == alice.jid, recs

    # A publisher does not replace the owner's item of the same id.
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='a1'><tune xmlns='http://jabber.org/protocol/tune'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    # A publisher retracts its own items only.
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{node}'><item id='a1'/></retract></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    r = await b.plugin["xep_0060"].retract(alice.jid, node, "b1")
    assert r["type"] == "result"
    r = await ps.get_items(None, node)
    assert [i["id"] for i in r["pubsub"]["items"]] == ["a1"]
    # Nobody else publishes; nor does a publisher create nodes or touch the avatar.
    resp = await c.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item><tune xmlns='http://jabber.org/protocol/tune'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='urn:example:new'><item><tune xmlns='http://jabber.org/protocol/tune'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    resp = await b.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='urn:xmpp:avatar:metadata'><item><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"
    # Owner-only use cases stay the owner's.
    resp = await b.iq("set", f"<pubsub xmlns='{NS_OWNER}'><purge node='{node}'/></pubsub>", to=alice.jid)
    assert stanza_error(resp)[0] == "forbidden"


async def test_subscriptions_and_affiliations_survive_a_restart(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    ps = a.plugin["xep_0060"]
    node = "urn:example:durable"
    await ps.publish(None, node, id="d1", payload=tune("d1"), options=publish_options(access_model="whitelist"))
    await ps.modify_affiliations(None, node, [(bob.jid, "member")])
    r = await b.plugin["xep_0060"].subscribe(alice.jid, node)
    assert r["type"] == "result"
    await a.logout()
    await b.logout()

    server.restart()
    test_pep.ASKED_VERS.clear()

    a = await pep_client(clients, alice)
    b = await pep_client(clients, bob)
    r = await a.plugin["xep_0060"].get_node_subscriptions(None, node)
    assert subs_of(r, NS_OWNER) == [(None, bob.jid, "subscribed")]
    r = await a.plugin["xep_0060"].get_node_affiliations(None, node)
    assert affs_of(r) == {alice.jid: "owner", bob.jid: "member"}
    await a.plugin["xep_0060"].publish(None, node, id="d2", payload=tune("d2"))
    await wait_event(b, node, lambda e: "d2" in item_ids(e), what="notification after the restart")
