"""Group chat and other domains: with the default `[muc] allow_external = false`, a user
of a federated server cannot enter a room here, and nothing they send reaches the room;
local users are not affected. (With `allow_external = true`, tests/test_s2s.py::
test_room_join_across shows a remote user chatting in a room.)

Two Rampart servers on loopback, alpha.test (rooms, default policy) and beta.test,
federating with each other through certificates from a test CA.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rampart_harness import make_client, stanza_error, stanza_error_text
from s2s_helpers import federated_pair

WORK = Path(__file__).resolve().parent / ".work" / "test_muc_federation"
PLUGINS = ("xep_0004", "xep_0030", "xep_0045")


@pytest.fixture(scope="module")
def fed():
    with federated_pair(WORK) as pair:
        yield pair


async def client(server, user):
    c = make_client(server, user, "pc")
    for p in PLUGINS:
        c.register_plugin(p)
    await c.login()
    await c.go_online()
    return c


async def test_remote_user_refused_by_default(fed):
    alpha, beta = fed
    a = await client(alpha, alpha.add_user("owner"))
    b = await client(beta, beta.add_user("outsider"))
    try:
        room = f"internal-{secrets.token_hex(3)}@conference.alpha.test"
        await a.plugin["xep_0045"].join_muc_wait(room, "alice", maxstanzas=0, timeout=20)
        form = a.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
        await a.plugin["xep_0045"].set_room_config(room, form)
        # bob@beta.test tries to enter: refused with not-allowed, carried back over s2s.
        b.plugin["xep_0045"].make_join_stanza(room, "bob").send()
        err = await b.wait_presence(lambda s: s["type"] == "error" and s["from"].bare == room,
                                    timeout=45, what="the refusal from alpha's room")
        assert stanza_error(err)[0] == "not-allowed", err
        assert "other domains" in stanza_error_text(err)
        # Nothing he sends reaches the room.
        m = b.make_message(mto=room, mbody="let me in", mtype="groupchat")
        m.send()
        await a.messages.assert_none(lambda m: m["body"] == "let me in", within=3.0,
                                     what="a remote user's message in the room")
        # alice does not see him arrive.
        assert not [p for p in a.presences.items if p["from"].bare == room and p["from"].resource == "bob"]
    finally:
        a.kill()
        b.kill()
