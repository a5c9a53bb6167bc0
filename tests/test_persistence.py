"""What survives a server restart (SIGTERM, start again on the same data_dir).

Covers: accounts and passwords, the roster with names, groups and
subscription states, and stored offline messages (still delivered once, in
order, with their original delay stamp); the server exits on SIGTERM.
"""

import asyncio

from rampart_harness import NS_DELAY, item_groups, roster_items


async def test_state_survives_restart(server, new_user, clients):
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    a = await clients(alice, "pc")
    b = await clients(bob, "pc")
    await a.roster_get()
    await b.roster_get()
    await a.go_online()
    await b.go_online()
    await a.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{bob.jid}' name='Bob B'>"
                      f"<group>Team</group></item></query>")
    a.send_presence(pto=bob.jid, ptype="subscribe")
    await b.wait_presence(lambda p: p["from"].bare == alice.jid and p.xml.get("type") == "subscribe")
    b.send_presence(pto=alice.jid, ptype="subscribed")
    await a.roster_pushes.wait_for(
        lambda p: roster_items(p).get(bob.jid) is not None
        and roster_items(p)[bob.jid].get("subscription") == "to")
    for i in range(3):
        a.send_msg(carol.jid, f"kept {i}")
    await a.sync()
    await asyncio.sleep(0.3)
    a.kill()
    b.kill()

    code = server.stop()
    assert code is not None
    server.start()

    a2 = await clients(alice, "pc2")
    item = roster_items(await a2.roster_get())[bob.jid]
    assert item.get("name") == "Bob B"
    assert item_groups(item) == {"Team"}
    assert item.get("subscription") == "to"
    b2 = await clients(bob, "pc2")
    assert roster_items(await b2.roster_get())[alice.jid].get("subscription") == "from"

    c = await clients(carol, "pc")
    await c.go_online()
    got = await c.messages.collect(3, lambda m: m["body"].startswith("kept "))
    assert [m["body"] for m in got] == [f"kept {i}" for i in range(3)]
    assert all(m.xml.find(f"{{{NS_DELAY}}}delay") is not None for m in got)


async def test_sigterm_stops_server_promptly(server, new_user, clients):
    u = new_user("term")
    c = await clients(u, "r")
    await c.go_online()
    proc = server.proc
    server.stop(grace=5)
    assert proc.returncode is not None
    # a clean shutdown on SIGTERM (not SIGKILL after the grace period)
    assert proc.returncode != -9, "server ignored SIGTERM and had to be killed"
    assert await c.wait_disconnected(10), "client not disconnected by the shutdown"
    server.start()
