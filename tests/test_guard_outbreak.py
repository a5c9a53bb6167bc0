"""Threat defense, behavioural (outbreak) rules: scripted slixmpp clients
behave like IM worms; the tests assert what users and operators see
(issue "Threat defense"; rules in crates/rampart-guard/src/outbreak.rs,
defaults in crates/rampart-guard/src/config.rs, router behaviour in
crates/rampart-server/src/pipeline.rs).

The server runs with the *shipped defaults* (no ``[guard]`` table), so these
tests pin the documented thresholds:

* ``blast``: threshold 5 distinct recipients of the same untrusted link from
  one account within 600 s. The message to the 5th recipient is refused and
  the account quarantined, so at most 4 (= threshold - 1) copies are
  delivered or stored; copies still waiting offline are then withdrawn.
* ``auto_reply``: threshold 3 distinct accounts answered with the same link,
  each answer within 30 s (``reply_within_secs``) of a message from that
  account. The 3rd answer is refused (quarantine): exactly 2 copies arrive.
* ``epidemic``: threshold 3 distinct accounts in the propagation chain (the
  origin plus every account that had received the link and sent it on).
  A->B is the origin's send, B->C makes {A, B}, C->D makes {A, B, C} and is
  refused; C is quarantined, D gets nothing, A and B stay free.
* ``epidemic`` also follows text (a chain letter of >= 40 characters of
  content, ``min_text_chars``), whatever greeting and name are put in front.
* quarantine survives a server restart;
* quarantine: later sends are refused with ``policy-violation`` "your account
  is quarantined: ..."; ``rampart quarantine release JID`` takes effect in a
  running server within a few seconds (the server refreshes every 2 s; we
  allow 10 s).

Every test uses its own accounts and its own link, so the in-memory outbreak
state of one test cannot feed another (the module shares one server). Sends
are paced (0.3 s) like a real worm; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

from rampart_harness import (
    events_list, quarantine_list, send_msg_id, stanza_error, stanza_error_text,
)

BLAST_THRESHOLD = 5       # [guard.blast] threshold default
AUTO_REPLY_THRESHOLD = 3  # [guard.auto_reply] threshold default
EPIDEMIC_THRESHOLD = 3    # [guard.epidemic] threshold default
PACE = 0.3


def name_of(user) -> str:
    """The human part of a test account ('alice' of 'alice12x0a1b2c')."""
    return re.match(r"[a-z]+", user.localpart).group(0)


async def online(clients, user, resource="pc"):
    c = await clients(user, resource)
    await c.go_online()
    return c


async def refusal(client, mid: str, timeout: float = 10) -> tuple[str, str, str]:
    err = await client.wait_message(lambda m: m["id"] == mid and m["type"] == "error",
                                    timeout=timeout, what=f"the error bounced for {mid}")
    cond, typ = stanza_error(err)
    return cond, typ, stanza_error_text(err)


def copies(client, link: str) -> list:
    return [m for m in client.messages.items if m["type"] != "error" and link in (m["body"] or "")]


async def assert_quarantined_now(client, to: str) -> str:
    """A benign message from a quarantined account is refused."""
    mid = send_msg_id(client, to, f"sorry, that was not me ({secrets.token_hex(2)})")
    cond, _typ, text = await refusal(client, mid)
    assert cond == "policy-violation" and text.startswith("your account is quarantined"), (
        f"a benign message after the quarantine came back with {cond!r} {text!r}")
    return text


def events_for(server, account: str) -> list[dict]:
    return [e for e in events_list(server) if e["account"] == account]


# ---------------------------------------------------------------------------
# 3. contact-list blast
# ---------------------------------------------------------------------------
async def test_contact_list_blast_quarantines_and_withdraws_offline_copies(
        server, new_user, clients):
    link = f"https://files.example.net/invoice/8812-{secrets.token_hex(3)}"
    worm = new_user("mallory")
    contacts = [new_user(n) for n in
                ("alice", "bob", "carol", "dave", "erin", "frank", "grace")]
    offline = {1, 3}  # bob and dave are offline while the worm runs
    control = new_user("olivia")

    cw = await online(clients, worm, "infected")
    ccontrol = await online(clients, control)
    cc = {i: await online(clients, u) for i, u in enumerate(contacts) if i not in offline}
    # A benign offline message for bob, to prove offline delivery itself works.
    ccontrol.send_msg(contacts[1].jid, "bob, the meeting moved to 3pm")
    await ccontrol.sync()

    templates = ["hey {n}, look {l}", "{n}!! look {l}", "look at this {l} :)",
                 "{n} is this you?? {l}", "omg {n} {l}", "{n} look {l}", "haha {l} {n}"]
    mids = []
    for i, u in enumerate(contacts):
        mids.append(send_msg_id(cw, u.jid, templates[i].format(n=name_of(u), l=link)))
        await asyncio.sleep(PACE)

    # The 5th recipient trips the rule: refused, account quarantined.
    cond, typ, text = await refusal(cw, mids[BLAST_THRESHOLD - 1])
    assert cond == "policy-violation", (cond, typ, text)
    assert "contact-list worm" in text and "quarantined" in text, text
    assert f"sent to {BLAST_THRESHOLD} people" in text, text
    # Everything after it: refused as quarantined.
    for mid in mids[BLAST_THRESHOLD:]:
        cond, _typ, text = await refusal(cw, mid)
        assert cond == "policy-violation" and text.startswith("your account is quarantined"), text
    # The first threshold-1 sends were not refused.
    early_errors = [m for m in cw.messages.unconsumed(lambda m: m["type"] == "error")
                    if m["id"] in mids[:BLAST_THRESHOLD - 1]]
    assert not early_errors, [stanza_error_text(e) for e in early_errors]
    await assert_quarantined_now(cw, contacts[0].jid)

    # Online recipients among the first four got exactly one copy each; later
    # recipients nothing.
    for i in range(BLAST_THRESHOLD - 1):
        if i not in offline:
            await cc[i].wait_message(lambda m: link in (m["body"] or ""), timeout=10,
                                     what=f"the worm's copy for contact #{i + 1}")
    await asyncio.sleep(1.0)
    live = {i: len(copies(c, link)) for i, c in cc.items()}
    assert live == {i: (1 if i < BLAST_THRESHOLD - 1 else 0) for i in cc}, live

    # Offline recipients log in later: their waiting copies were withdrawn.
    later = {i: await clients(contacts[i], "later") for i in sorted(offline)}
    for c in later.values():
        c.send_presence()
    await later[1].wait_message(lambda m: m["body"] == "bob, the meeting moved to 3pm",
                                timeout=10, what="the benign offline message for bob")
    await asyncio.sleep(1.5)
    stored = {i: len(copies(c, link)) for i, c in later.items()}
    assert stored == {i: 0 for i in offline}, (
        f"offline copies from the quarantined account were delivered at login: {stored}")
    total = sum(live.values()) + sum(stored.values())
    assert total <= BLAST_THRESHOLD - 1, total
    assert re.search(r"withdrew offline messages.*withdrawn=2",
                     server.log_text(limit=10**8)), (
        "the server did not log withdrawing the 2 offline copies")

    # Operators see it.
    q = quarantine_list(server)
    assert worm.jid in q, q
    assert q[worm.jid][1] == "outbreak.blast", q[worm.jid]
    evs = [e for e in events_for(server, worm.jid)
           if e["rule"] == "outbreak.blast" and e["action"] == "quarantine"]
    assert len(evs) == 1, events_for(server, worm.jid)
    ev = evs[0]["evidence"]
    first5 = [u.jid for u in contacts[:BLAST_THRESHOLD]]
    assert sorted(ev["accounts"]) == sorted(first5), ev
    assert [(l["sender"], l["recipient"]) for l in ev["chain"]] == \
        [(worm.jid, j) for j in first5], ev["chain"]
    assert link.split("://", 1)[1] in (ev.get("url") or ""), ev


async def test_blast_with_disguised_link_variants_still_counts_one_link(
        server, new_user, clients):
    """The worm dresses the same link up differently for each contact (host
    case, tracking parameters, fragment, trailing slash, default port): the
    normalized link (Url::key) is one key, so the 5th recipient still trips
    the blast rule."""
    tok = secrets.token_hex(3)
    base = f"files.example.net/invoice/{tok}"
    variants = [f"https://{base}", f"HTTPS://Files.Example.NET/invoice/{tok}?utm_source=im",
                f"https://{base}#page=2", f"https://{base}/", f"https://{base}?fbclid=AbC123",
                f"https://files.example.net:443/invoice/{tok}"]
    worm = new_user("vera")
    rcpts = [new_user(n) for n in ("kim", "lee", "max", "ned", "ola", "pat")]
    cw = await online(clients, worm)
    cr = [await online(clients, r) for r in rcpts]
    mids = []
    for r, v in zip(rcpts, variants):
        mids.append(send_msg_id(cw, r.jid, f"{name_of(r)}, look {v}"))
        await asyncio.sleep(PACE)
    cond, _typ, text = await refusal(cw, mids[BLAST_THRESHOLD - 1])
    assert cond == "policy-violation" and "contact-list worm" in text, (cond, text)
    await asyncio.sleep(1.0)
    got = [len([m for m in c.messages.items if m["type"] != "error" and tok in (m["body"] or "")])
           for c in cr]
    assert got == [1] * (BLAST_THRESHOLD - 1) + [0] * (len(cr) - BLAST_THRESHOLD + 1), got


# ---------------------------------------------------------------------------
# 4. auto-reply worm
# ---------------------------------------------------------------------------
async def test_auto_reply_worm_is_quarantined_at_threshold(server, new_user, clients):
    link = f"https://pics.example.org/album/{secrets.token_hex(4)}"
    worm = new_user("wally")
    victims = [new_user(n) for n in ("ann", "ben", "cat", "dan")]
    cw = await online(clients, worm, "bot")
    cv = [await online(clients, v) for v in victims]

    answered: list[str] = []

    def auto_reply(msg):
        if msg["type"] in ("chat", "normal") and msg["body"] and msg["from"].bare != worm.jid:
            mid = send_msg_id(cw, msg["from"].bare, f"lol look at this {link}")
            answered.append(mid)

    cw.add_event_handler("message", auto_reply)

    greetings = ["hi, are you around today?", "did you get my mail about the budget?",
                 "lunch at noon?", "can you review my PR when you have time"]
    for c, v, text in zip(cv, victims, greetings):
        n = len(answered)
        c.send_msg(worm.jid, text)
        deadline = time.monotonic() + 10
        while len(answered) == n:
            assert time.monotonic() < deadline, f"the auto-responder never answered {v.jid}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(PACE)

    cond, _typ, text = await refusal(cw, answered[AUTO_REPLY_THRESHOLD - 1])
    assert cond == "policy-violation", (cond, text)
    assert "auto-reply worm" in text and "quarantined" in text, text
    cond, _typ, text = await refusal(cw, answered[AUTO_REPLY_THRESHOLD])
    assert text.startswith("your account is quarantined"), text

    for c in cv[:AUTO_REPLY_THRESHOLD - 1]:
        await c.wait_message(lambda m: link in (m["body"] or ""), timeout=10,
                             what="the auto-reply before the threshold")
    await asyncio.sleep(1.0)
    got = [len(copies(c, link)) for c in cv]
    assert got == [1] * (AUTO_REPLY_THRESHOLD - 1) + [0] * (len(cv) - AUTO_REPLY_THRESHOLD + 1), got

    await assert_quarantined_now(cw, victims[0].jid)
    assert quarantine_list(server).get(worm.jid, [None, None])[1] == "outbreak.auto_reply"
    evs = [e for e in events_for(server, worm.jid) if e["rule"] == "outbreak.auto_reply"]
    assert len(evs) == 1 and evs[0]["action"] == "quarantine", events_for(server, worm.jid)
    ev = evs[0]["evidence"]
    assert sorted(ev["accounts"]) == sorted(v.jid for v in victims[:AUTO_REPLY_THRESHOLD]), ev
    # The chain alternates: victim -> worm (incoming), worm -> victim (answer).
    pairs = [(l["sender"], l["recipient"]) for l in ev["chain"]]
    for v in victims[:AUTO_REPLY_THRESHOLD]:
        assert (v.jid, worm.jid) in pairs and (worm.jid, v.jid) in pairs, pairs


# ---------------------------------------------------------------------------
# 5. epidemic
# ---------------------------------------------------------------------------
async def test_epidemic_chain_quarantines_the_relay_that_completes_it(
        server, new_user, clients):
    link = f"https://share.example.org/d/{secrets.token_hex(4)}"
    users = [new_user(n) for n in ("amy", "bill", "cora", "drew")]
    cs = [await online(clients, u) for u in users]
    texts = ["hey {n}, this is hilarious {l}", "{n} you have to see this {l}",
             "lol {n} {l}"]

    mids = []
    for hop in range(3):
        sender, rcpt = hop, hop + 1
        mids.append(send_msg_id(cs[sender], users[rcpt].jid,
                                texts[hop].format(n=name_of(users[rcpt]), l=link)))
        if hop < 2:
            # The worm in the recipient's client reacts to what arrived.
            await cs[rcpt].wait_message(lambda m: link in (m["body"] or ""), timeout=10,
                                        what=f"hop {hop + 1} ({users[sender].localpart} -> "
                                             f"{users[rcpt].localpart})")
            await asyncio.sleep(PACE)

    cond, _typ, text = await refusal(cs[2], mids[2])
    assert cond == "policy-violation", (cond, text)
    assert "spreading from account to account" in text and "quarantined" in text, text
    assert f"({EPIDEMIC_THRESHOLD} accounts)" in text, text
    await cs[3].messages.assert_none(lambda m: link in (m["body"] or ""), within=1.0,
                                     what="the epidemic's third hop at the last account")
    for i in range(2):
        assert not cs[i].messages.unconsumed(lambda m: m["type"] == "error"), \
            f"{users[i].jid} got an error for its hop"

    await assert_quarantined_now(cs[2], users[0].jid)
    # The origin and the first relay are not quarantined.
    q = quarantine_list(server)
    assert q.get(users[2].jid, [None, None])[1] == "outbreak.epidemic", q
    assert users[0].jid not in q and users[1].jid not in q, q
    cs[1].send_msg(users[0].jid, "did you send me something weird?")
    await cs[0].wait_message(lambda m: m["body"] == "did you send me something weird?",
                             timeout=10, what="a benign message from the first relay")

    evs = [e for e in events_for(server, users[2].jid) if e["rule"] == "outbreak.epidemic"]
    assert len(evs) == 1 and evs[0]["action"] == "quarantine", events_for(server, users[2].jid)
    ev = evs[0]["evidence"]
    chain = [(l["sender"], l["recipient"]) for l in ev["chain"]]
    j = [u.jid for u in users]
    assert chain == [(j[0], j[1]), (j[1], j[2]), (j[2], j[3])], chain
    times = [l["at_ms"] for l in ev["chain"]]
    assert times == sorted(times), times
    assert set(ev["accounts"]) == set(j[:3]), ev


async def test_text_only_chain_letter_epidemic(server, new_user, clients):
    """Epidemic rule on text keys: a chain letter without any link (>= 40
    characters of content, so it is fingerprinted) hops A->B->C->D with a
    different greeting and name each time; the hop that makes 3 accounts is
    refused and its sender quarantined (outbreak.epidemic, fingerprint in the
    evidence)."""
    users = [new_user(n) for n in ("gus", "hal", "ida", "joe")]
    cs = [await online(clients, u) for u in users]
    tag = secrets.token_hex(3)
    letter = ("IMPORTANT: the admins will delete every inactive account tomorrow at noon "
              f"unless you forward this message to all your contacts right now (ref {tag})")
    greetings = ["hi {n}, ", "{n}!! ", "dear {n}: "]
    mids = []
    for hop in range(3):
        s_, r_ = hop, hop + 1
        mids.append(send_msg_id(cs[s_], users[r_].jid,
                                greetings[hop].format(n=name_of(users[r_])) + letter))
        if hop < 2:
            await cs[r_].wait_message(lambda m: tag in (m["body"] or ""), timeout=10,
                                      what=f"chain letter hop {hop + 1}")
            await asyncio.sleep(PACE)
    cond, _typ, text = await refusal(cs[2], mids[2])
    assert cond == "policy-violation", (cond, text)
    assert "spreading from account to account" in text and "quarantined" in text, text
    await cs[3].messages.assert_none(lambda m: tag in (m["body"] or ""), within=1.0,
                                     what="the chain letter's third hop")
    evs = [e for e in events_for(server, users[2].jid) if e["rule"] == "outbreak.epidemic"]
    assert len(evs) == 1, events_for(server, users[2].jid)
    ev = evs[0]["evidence"]
    assert re.fullmatch(r"[0-9a-f]{16}", ev.get("fingerprint") or ""), ev
    j = [u.jid for u in users]
    assert [(l["sender"], l["recipient"]) for l in ev["chain"]] == \
        [(j[0], j[1]), (j[1], j[2]), (j[2], j[3])], ev["chain"]


# ---------------------------------------------------------------------------
# 6. release
# ---------------------------------------------------------------------------
async def test_release_lets_the_account_send_again(server, new_user, clients):
    link = f"https://files.example.net/release/{secrets.token_hex(4)}"
    worm = new_user("rita")
    rcpts = [new_user(n) for n in ("ron", "sue", "tom", "uma", "vic")]
    cw = await online(clients, worm)
    c0 = await online(clients, rcpts[0])
    mids = []
    for r in rcpts:
        mids.append(send_msg_id(cw, r.jid, f"{name_of(r)} look {link}"))
        await asyncio.sleep(0.05)
    _cond, _typ, text = await refusal(cw, mids[-1])
    assert "quarantined" in text, text
    await assert_quarantined_now(cw, rcpts[0].jid)

    r = server.cli("quarantine", "release", worm.jid)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "released" in r.stdout, r.stdout
    t0 = time.monotonic()
    n = 0
    while True:
        n += 1
        body = f"all good now? #{n}"
        cw.send_msg(rcpts[0].jid, body)
        try:
            await c0.wait_message(lambda m, body=body: m["body"] == body, timeout=0.5)
            break
        except AssertionError:
            assert time.monotonic() - t0 < 10, (
                "10 s after `rampart quarantine release` the account is still refused: "
                + "; ".join(stanza_error_text(e) for e in cw.messages.items[-3:]))
    assert worm.jid not in quarantine_list(server)
    evs = events_for(server, worm.jid)
    rel = [e for e in evs if e["action"] == "release"]
    assert len(rel) == 1 and rel[0]["rule"] == "quarantine", evs
    # Newest first: the release is listed before the quarantine it ended.
    assert evs.index(rel[0]) < evs.index(next(e for e in evs if e["action"] == "quarantine"))
    # --since filters by time.
    assert rel[0]["id"] in [e["id"] for e in events_list(server, "--since", "10m")]
    assert events_list(server, "--since", "2099-01-01") == []
    # Releasing again is an error.
    r = server.cli("quarantine", "release", worm.jid)
    assert r.returncode != 0 and "not quarantined" in r.stderr, (r.returncode, r.stderr)


async def test_quarantine_survives_a_restart(server, new_user, clients):
    """Quarantine is stored, not only cached: after a server restart the
    account is still refused (and still listed)."""
    link = f"https://files.example.net/persist/{secrets.token_hex(4)}"
    worm = new_user("yuri")
    rcpts = [new_user(n) for n in ("abe", "bea", "cal", "deb", "eve")]
    cw = await online(clients, worm)
    mids = []
    for r in rcpts:
        mids.append(send_msg_id(cw, r.jid, f"{name_of(r)} look {link}"))
        await asyncio.sleep(0.05)
    _cond, _typ, text = await refusal(cw, mids[-1])
    assert "quarantined" in text, text
    await cw.logout()

    server.restart()
    cw2 = await online(clients, worm, "again")
    await assert_quarantined_now(cw2, rcpts[0].jid)
    assert quarantine_list(server).get(worm.jid, [None, None])[1] == "outbreak.blast"
