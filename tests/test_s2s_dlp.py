"""Data-loss prevention at the border (issue #8, `[guard.dlp]`).

alpha.test and beta.test federate. What alice on alpha sees when she sends a customer's card
number or a private key to bob at the partner: the message is refused with
`policy-violation` naming the kind of data, bob gets nothing, the security event's evidence
is masked, and the refusal is in the archive. The same text to a colleague on alpha is
delivered: inside the company it is not a leak. Ordinary chat crosses untouched.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rampart_harness import (
    archive_search, archive_verdict, events_list, send_msg_id, stanza_error, stanza_error_text,
)
from s2s_helpers import federated_pair, online, wait_for

WORK = Path(__file__).resolve().parent / ".work" / "test_s2s_dlp"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def fed():
    with federated_pair(WORK) as pair:
        yield pair


async def test_card_number_to_a_partner_is_refused_but_flows_inside(fed):
    alpha, beta = fed
    a, colleague, b = alpha.add_user("alice"), alpha.add_user("colleague"), beta.add_user("bob")
    text = f"the customer's card is {CARD}, expiry 12/29"
    async with online(alpha, a) as ca, online(alpha, colleague) as cc, online(beta, b) as cb:
        # Ordinary chat crosses the border (and the link is up for what follows).
        t = secrets.token_hex(4)
        ca.send_msg(b.jid, f"meeting at 10:30 in room 4-112 {t}")
        await cb.wait_message(lambda m: t in (m["body"] or ""), timeout=45, what="ordinary chat across")

        mid = send_msg_id(ca, b.jid, text)
        err = await ca.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=30,
                                    what="the DLP refusal")
        assert stanza_error(err)[0] == "policy-violation"
        why = stanza_error_text(err)
        assert "payment card number" in why and "beta.test" in why, why
        assert "4111" not in why
        await cb.messages.assert_none(lambda m: "card" in (m["body"] or ""), within=3,
                                      what="the card number at the partner")

        # Inside the company the same text is delivered.
        ca.send_msg(colleague.jid, text)
        await cc.wait_message(lambda m: m["body"] == text, timeout=30, what="the text to a colleague")

    ev = wait_for(lambda: [e for e in events_list(alpha) if e["account"] == a.jid
                           and e["rule"] == "dlp.card_number"], what="the DLP security event")
    evidence = str(ev[0]["evidence"])
    assert "**** **** **** 1111" in evidence and "4111 1111" not in evidence, ev[0]
    recs = archive_search(alpha, None, "--verdict", "blocked", "--with", b.jid)
    assert any(r["direction"] == "outbound" and archive_verdict(r)[:2] == ("blocked", "dlp.card_number")
               for r in recs), recs


async def test_private_key_and_cloud_key_to_a_partner_are_refused(fed):
    alpha, beta = fed
    a, b = alpha.add_user("dev"), beta.add_user("contractor")
    async with online(alpha, a) as ca, online(beta, b) as cb:
        for body, what in [
            ("here: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "private key"),
            ("use AKIAIOSFODNN7EXAMPLE for the bucket", "AWS access key"),
        ]:
            mid = send_msg_id(ca, b.jid, body)
            err = await ca.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=45,
                                        what=f"the refusal of the {what}")
            assert stanza_error(err)[0] == "policy-violation"
            assert what in stanza_error_text(err), stanza_error_text(err)
        await cb.messages.assert_none(lambda m: True, within=2, what="anything from dev")
