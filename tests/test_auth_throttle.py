"""Authentication throttling per source IP.

This module's server has ``auth_failures = 3`` and ``auth_block_secs = 10``
(the block is kept short so the suite can also watch it expire).

Covers: after 3 failed SASL attempts from 127.0.0.1, every attempt from that
address -- even with the right password, for any account, with any
mechanism -- gets <failure><temporary-auth-failure/></failure>; another
source address (127.0.0.2) is not affected; auth_block_secs after the last
refused attempt the right password works again from 127.0.0.1.
"""

import asyncio
import time

import pytest

from rampart_harness import LoginFailed, RawXMPP, sasl_condition, scram_auth

RAMPART_LIMITS = {"auth_failures": 3, "auth_block_secs": 10}

BLOCK_SECS = RAMPART_LIMITS["auth_block_secs"]
_state = {}


async def test_block_after_three_failures(server, new_user, clients):
    victim = new_user("victim")
    for i in range(3):
        c = clients.new(victim, f"guess{i}", sasl_mech="PLAIN")
        c.password = f"guess-{i}"
        with pytest.raises(LoginFailed):
            await c.login()
        assert c.auth_failures == ["not-authorized"], \
            f"attempt {i + 1}: SASL failures {c.auth_failures}"
    _state["blocked_at"] = time.monotonic()

    right = clients.new(victim, "right", sasl_mech="PLAIN")
    with pytest.raises(LoginFailed):
        await right.login()
    _state["last_attempt"] = time.monotonic()
    assert right.auth_failures == ["temporary-auth-failure"], (
        f"right password after 3 failures: SASL failures {right.auth_failures}")


async def test_block_applies_to_every_account_and_mechanism(server, new_user, clients):
    if "blocked_at" not in _state:
        pytest.skip("depends on test_block_after_three_failures")
    other = new_user("innocent")
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        c = clients.new(other, mech.lower(), sasl_mech=mech)
        with pytest.raises(LoginFailed):
            await c.login()
        _state["last_attempt"] = time.monotonic()
        assert c.auth_failures == ["temporary-auth-failure"], (mech, c.auth_failures)
    # raw SCRAM: must be refused, not just at the end of the exchange
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        res = scram_auth(raw, "SCRAM-SHA-256", other.localpart, other.password)
        _state["last_attempt"] = time.monotonic()
        assert res.outcome == "failure" and res.condition == "temporary-auth-failure", res
    finally:
        raw.close()


async def test_other_source_address_not_blocked(server, new_user):
    if "blocked_at" not in _state:
        pytest.skip("depends on test_block_after_three_failures")
    u = new_user("elsewhere")
    raw = RawXMPP(server, source_ip="127.0.0.2")
    try:
        raw.negotiate_tls()
        el = raw.auth_plain(u.localpart, u.password)
        assert sasl_condition(el) is None and el.tag.endswith("}success"), (
            f"login from 127.0.0.2 refused: {sasl_condition(el)}")
    finally:
        raw.close()


@pytest.mark.timeout(60)
async def test_block_expires(server, new_user, clients):
    if "blocked_at" not in _state:
        pytest.skip("depends on test_block_after_three_failures")
    u = new_user("later")
    # measured from the last refused attempt, in case refused attempts
    # prolong the block (a stricter but legitimate policy)
    wait = _state.get("last_attempt", _state["blocked_at"]) + BLOCK_SECS + 1.5 - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
    c = await clients(u, "back", sasl_mech="PLAIN")
    await c.ping_server()
    c2 = await clients(u, "back2")
    await c2.ping_server()
