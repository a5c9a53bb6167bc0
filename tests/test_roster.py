"""Roster management and roster versioning (RFC 6121 §2).

Covers: an empty roster for a new account, adding an item with a name and
groups, updating and removing it, roster pushes to every interested
resource, the roster-versioning stream feature, "roster get with the
current ver -> empty result", getting the changes with an old ver, and the
errors for invalid roster sets.
"""

from rampart_harness import (
    NS_ROSTER, NS_ROSTERVER, item_groups, roster_items, stanza_error,
)


def q(items_xml: str) -> str:
    return f"<query xmlns='{NS_ROSTER}'>{items_xml}</query>"


async def roster_set(c, jid, name=None, groups=(), subscription=None):
    attrs = f" jid='{jid}'"
    if name is not None:
        attrs += f" name='{name}'"
    if subscription is not None:
        attrs += f" subscription='{subscription}'"
    g = "".join(f"<group>{x}</group>" for x in groups)
    return await c.iq("set", q(f"<item{attrs}>{g}</item>"))


async def test_new_account_has_empty_roster(server, new_user, clients):
    u = new_user("empty")
    c = await clients(u, "r")
    resp = await c.roster_get()
    assert resp["type"] == "result", resp
    assert roster_items(resp) == {}


async def test_roster_versioning_feature_advertised(server, new_user, clients):
    u = new_user("ver")
    c = await clients(u, "r")
    assert "rosterver" in c.features, (
        f"<ver xmlns='{NS_ROSTERVER}'/> missing from stream features; got {c.features}")
    resp = await c.roster_get(ver="")
    assert resp["type"] == "result"
    query = resp.xml.find(f"{{{NS_ROSTER}}}query")
    assert query is not None, "roster get with ver='' must return the full roster"
    assert query.get("ver"), "roster result carries no ver attribute"


async def test_add_item_with_name_and_groups(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    await c.roster_get()
    resp = await roster_set(c, contact.jid, name="Contact Person", groups=["Friends", "Work"])
    assert resp["type"] == "result", resp
    push = await c.roster_pushes.wait_for(lambda p: contact.jid in roster_items(p),
                                          what="roster push for the new item")
    item = roster_items(push)[contact.jid]
    assert item.get("name") == "Contact Person"
    assert item_groups(item) == {"Friends", "Work"}
    assert item.get("subscription") == "none"

    full = await c.roster_get()
    item = roster_items(full)[contact.jid]
    assert item.get("name") == "Contact Person"
    assert item_groups(item) == {"Friends", "Work"}
    assert item.get("subscription") == "none"


async def test_update_item_replaces_name_and_groups(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    await c.roster_get()
    await roster_set(c, contact.jid, name="Old", groups=["A", "B"])
    resp = await roster_set(c, contact.jid, name="New Name", groups=["C"])
    assert resp["type"] == "result", resp
    item = roster_items(await c.roster_get())[contact.jid]
    assert item.get("name") == "New Name"
    assert item_groups(item) == {"C"}


async def test_unicode_names_and_groups_survive(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    await roster_set(c, contact.jid, name="Zoë Ærø 名前", groups=["Família ☕"])
    item = roster_items(await c.roster_get())[contact.jid]
    assert item.get("name") == "Zoë Ærø 名前"
    assert item_groups(item) == {"Família ☕"}


async def test_remove_item(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    await c.roster_get()
    await roster_set(c, contact.jid, name="Temp")
    resp = await roster_set(c, contact.jid, subscription="remove")
    assert resp["type"] == "result", resp
    push = await c.roster_pushes.wait_for(
        lambda p: roster_items(p).get(contact.jid) is not None
        and roster_items(p)[contact.jid].get("subscription") == "remove",
        what="roster push with subscription='remove'")
    assert push is not None
    assert contact.jid not in roster_items(await c.roster_get())


async def test_remove_unknown_item_is_item_not_found(server, new_user, clients):
    u = new_user("owner")
    c = await clients(u, "r")
    resp = await roster_set(c, f"nobody-{u.localpart}@localhost", subscription="remove")
    assert resp["type"] == "error"
    assert stanza_error(resp)[0] == "item-not-found", resp


async def test_roster_push_goes_to_all_interested_resources(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    a = await clients(u, "a")
    b = await clients(u, "b")
    await a.roster_get()
    await b.roster_get()  # both resources are now "interested"
    await roster_set(a, contact.jid, name="Pushed")
    for c, res in ((a, "a"), (b, "b")):
        push = await c.roster_pushes.wait_for(lambda p: contact.jid in roster_items(p),
                                              what=f"roster push on resource {res}")
        assert roster_items(push)[contact.jid].get("name") == "Pushed"
        assert not push["from"] or push["from"] == u.jid, f"push from {push['from']}"


async def test_roster_get_with_current_ver_returns_empty_result(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    await roster_set(c, contact.jid, name="Someone")
    first = await c.roster_get(ver="")
    ver = first.xml.find(f"{{{NS_ROSTER}}}query").get("ver")
    assert ver, "no ver in roster result"
    again = await c.roster_get(ver=ver)
    assert again["type"] == "result", again
    assert again.xml.find(f"{{{NS_ROSTER}}}query") is None, (
        f"roster get with the current ver must be an empty IQ result (RFC 6121 §2.6.3), got {again}")


async def test_roster_get_with_old_ver_returns_changes(server, new_user, clients):
    u, c1, c2 = new_user("owner"), new_user("contact"), new_user("contact")
    w = await clients(u, "writer")
    await roster_set(w, c1.jid, name="First")
    old = (await w.roster_get(ver="")).xml.find(f"{{{NS_ROSTER}}}query").get("ver")
    await roster_set(w, c2.jid, name="Second")
    await w.logout()

    r = await clients(u, "reader")
    resp = await r.roster_get(ver=old)
    assert resp["type"] == "result", resp
    query = resp.xml.find(f"{{{NS_ROSTER}}}query")
    if query is not None:  # full roster with a new ver
        items = roster_items(resp)
        assert c2.jid in items and c1.jid in items, f"items: {list(items)}"
        assert query.get("ver") and query.get("ver") != old, "ver did not change"
    else:  # empty result, then pushes for the changes
        push = await r.roster_pushes.wait_for(lambda p: c2.jid in roster_items(p),
                                              what="roster push for the item added since ver")
        assert push.xml.find(f"{{{NS_ROSTER}}}query").get("ver"), "push without ver"


async def test_pushes_carry_new_ver(server, new_user, clients):
    u, contact = new_user("owner"), new_user("contact")
    c = await clients(u, "r")
    v0 = (await c.roster_get(ver="")).xml.find(f"{{{NS_ROSTER}}}query").get("ver")
    await roster_set(c, contact.jid, name="X")
    push = await c.roster_pushes.wait_for(lambda p: contact.jid in roster_items(p))
    v1 = push.xml.find(f"{{{NS_ROSTER}}}query").get("ver")
    assert v1 and v1 != v0, f"push ver {v1!r} vs initial {v0!r}"
    again = await c.roster_get(ver=v1)
    assert again.xml.find(f"{{{NS_ROSTER}}}query") is None, \
        "the ver from the latest push is not treated as current"


async def test_roster_set_with_two_items_is_bad_request(server, new_user, clients):
    u, x, y = new_user("owner"), new_user("c"), new_user("c")
    c = await clients(u, "r")
    resp = await c.iq("set", q(f"<item jid='{x.jid}'/><item jid='{y.jid}'/>"))
    assert resp["type"] == "error"
    assert stanza_error(resp)[0] == "bad-request", resp


async def test_roster_set_with_empty_group_is_not_acceptable(server, new_user, clients):
    u, x = new_user("owner"), new_user("c")
    c = await clients(u, "r")
    resp = await c.iq("set", q(f"<item jid='{x.jid}'><group></group></item>"))
    assert resp["type"] == "error"
    assert stanza_error(resp)[0] == "not-acceptable", resp


async def test_roster_is_private(server, new_user, clients):
    """RFC 6121 §2.1.5: a roster get addressed to another user's account
    must not reveal that user's roster."""
    u, other, secret = new_user("owner"), new_user("other"), new_user("secret")
    oc = await clients(other, "r")
    await roster_set(oc, secret.jid, name="Secret Contact")
    c = await clients(u, "r")
    resp = await c.iq("get", q(""), to=other.jid)
    assert secret.jid not in roster_items(resp), "read another user's roster!"
    assert resp["type"] == "error", resp
