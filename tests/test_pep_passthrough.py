"""Pass-through extensions between two users (issue #7), over real TLS with
slixmpp: XEP-0333 chat markers, XEP-0444 reactions, XEP-0231 bits of binary
(fetched from the peer's full JID), XEP-0047 in-band bytestreams. IBB data is
file content: each <data/> chunk passes the guard, so the EICAR test file sent
over IBB is refused with policy-violation (and journaled as a blocked File
record) and never reaches the peer.
"""

from __future__ import annotations

import asyncio
import base64

from rampart_harness import archive_search
from test_pep import iq_raw, raw_error

EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


async def pair(clients, new_user, plugins):
    alice, bob = new_user("alice"), new_user("bob")
    out = []
    for u in (alice, bob):
        c = clients.new(u, "pc")
        for p in plugins:
            c.register_plugin(p)
        await c.login()
        await c.go_online()
        out.append(c)
    return alice, bob, out[0], out[1]


async def test_chat_markers_and_reactions_pass_through(server, new_user, clients):
    alice, bob, a, b = await pair(clients, new_user, ["xep_0030", "xep_0333", "xep_0444", "xep_0334"])
    msg = a.make_message(mto=f"{bob.jid}/pc", mbody="markable hello", mtype="chat")
    msg["id"] = "m-1"
    msg.enable("markable")
    msg.send()
    got = await b.wait_message(lambda m: m["body"] == "markable hello", what="the markable message")
    assert got.xml.find("{urn:xmpp:chat-markers:0}markable") is not None
    b.plugin["xep_0333"].send_marker(a.boundjid, "m-1", "displayed", mtype="chat")
    m = await a.wait_message(lambda m: m.xml.find("{urn:xmpp:chat-markers:0}displayed") is not None, what="displayed marker")
    assert m.xml.find("{urn:xmpp:chat-markers:0}displayed").get("id") == "m-1"
    b.plugin["xep_0444"].send_reactions(a.boundjid, "m-1", ["👍", "🎉"])
    m = await a.wait_message(lambda m: m.xml.find("{urn:xmpp:reactions:0}reactions") is not None, what="reactions")
    r = m.xml.find("{urn:xmpp:reactions:0}reactions")
    assert r.get("id") == "m-1"
    assert sorted(x.text for x in r) == sorted(["👍", "🎉"])


async def test_bits_of_binary_fetched_from_peer(server, new_user, clients):
    alice, bob, a, b = await pair(clients, new_user, ["xep_0030", "xep_0231"])
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    cid = await a.plugin["xep_0231"].set_bob(data, "image/png")
    iq = await b.plugin["xep_0231"].get_bob(a.boundjid, cid, cached=False, timeout=15)
    assert iq["bob"]["cid"] == cid
    assert iq["bob"]["data"] == data


async def test_ibb_transfer_passes_and_eicar_is_blocked(server, new_user, clients):
    alice, bob, a, b = await pair(clients, new_user, ["xep_0030", "xep_0047"])
    b.plugin["xep_0047"].auto_accept = True
    received = []
    b.add_event_handler("ibb_stream_data", lambda s: received.append(s.read()))
    stream = await a.plugin["xep_0047"].open_stream(b.boundjid, block_size=4096, timeout=15)
    payload = b"quarterly figures, harmless\n" * 20
    await stream.sendall(payload, timeout=15)
    deadline = asyncio.get_running_loop().time() + 15
    while b"".join(received) != payload:
        assert asyncio.get_running_loop().time() < deadline, f"got {len(b''.join(received))} bytes"
        await asyncio.sleep(0.05)

    # The EICAR test file as the next chunk of the same stream: refused.
    chunk = base64.b64encode(EICAR.encode()).decode()
    before = len(received)
    resp = await iq_raw(a, "set",
        f"<data xmlns='http://jabber.org/protocol/ibb' seq='{stream.send_seq + 1}' sid='{stream.sid}'>{chunk}</data>",
        to=str(b.boundjid))
    cond, text = raw_error(resp)
    assert cond == "policy-violation", text
    assert "signature" in text
    await asyncio.sleep(1.0)
    assert len(received) == before
    recs = [r for r in archive_search(server, None, "--from", alice.jid) if r.get("kind") == "file"]
    verdicts = sorted(r["verdict"]["verdict"] if isinstance(r["verdict"], dict) else r["verdict"] for r in recs)
    # The transfer's <open/> and the refused chunk are on the record.
    assert verdicts == ["blocked", "delivered"], recs


async def test_ibb_over_messages_is_scanned_too(server, new_user, clients):
    """The <message/> transport of XEP-0047 is no side channel either."""
    alice, bob, a, b = await pair(clients, new_user, ["xep_0030", "xep_0047"])
    b.plugin["xep_0047"].auto_accept = True
    received = []
    b.add_event_handler("ibb_stream_data", lambda s: received.append(s.read()))
    stream = await a.plugin["xep_0047"].open_stream(b.boundjid, block_size=4096, use_messages=True, timeout=15)
    await stream.sendall(b"benign bytes", timeout=15)
    deadline = asyncio.get_running_loop().time() + 15
    while b"".join(received) != b"benign bytes":
        assert asyncio.get_running_loop().time() < deadline, received
        await asyncio.sleep(0.05)
    chunk = base64.b64encode(EICAR.encode()).decode()
    a.send_raw(f"<message to='{b.boundjid}' id='ibb-eicar'><data xmlns='http://jabber.org/protocol/ibb' "
               f"seq='{stream.send_seq + 1}' sid='{stream.sid}'>{chunk}</data></message>")
    err = await a.wait_message(lambda m: m["type"] == "error" and m["id"] == "ibb-eicar", what="the bounce")
    assert err.xml.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}policy-violation") is not None
    await asyncio.sleep(1.0)
    assert b"".join(received) == b"benign bytes"
