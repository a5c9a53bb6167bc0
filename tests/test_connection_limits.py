"""Per-IP connection limit.

This module's server has ``max_connections_per_ip = 3``.

Covers: with 3 connections open from 127.0.0.1, a 4th on the STARTTLS port
gets stream error policy-violation and is closed, and one on the direct-TLS
port is closed; the limit is per source address (127.0.0.2 still gets in);
once connections close, the slot is free again and a normal client works.
"""

import asyncio
import socket
import time

from rampart_harness import HOST, RawXMPP, assert_server_serves

RAMPART_LIMITS = {"max_connections_per_ip": 3}


def hold(server, n=3, timeout=5.0):
    """Open n streams from 127.0.0.1. Connections closed just before (e.g.
    by the previous test) are released by the server asynchronously, once
    it reads their EOF, so a refusal is retried for a few seconds."""
    held = []
    deadline = time.monotonic() + timeout
    while len(held) < n:
        raw = RawXMPP(server)
        raw.open_stream()
        el = raw.next_element(10)
        if el is not None and el.tag == "{http://etherx.jabber.org/streams}features":
            held.append(raw)
            continue
        raw.close()
        if time.monotonic() > deadline:
            for h in held:
                h.close()
            raise AssertionError(
                f"could not hold {n} connections from 127.0.0.1 within {timeout}s "
                f"(got {len(held)}; last answer: {raw.describe()})")
        time.sleep(0.2)
    return held


def read_refusal(server, port, source_ip=None) -> RawXMPP:
    """Connect; if the server does not speak first, send a stream header;
    then read until the server closes."""
    raw = RawXMPP(server, port=port, source_ip=source_ip)
    got = raw.recv_some(1.0)
    if got is None:
        raw.open_stream()
    raw.read_until_close(10)
    return raw


async def wait_until_serves(server, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            await assert_server_serves(server)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_extra_connection_on_starttls_port_gets_policy_violation(server):
    held = hold(server)
    try:
        extra = read_refusal(server, server.c2s_port)
        try:
            assert extra.closed, f"4th connection from 127.0.0.1 was not closed; {extra.describe()}"
            assert extra.stream_error_anywhere() == "policy-violation", extra.describe()
        finally:
            extra.close()
        # the held connections are unaffected
        for raw in held:
            assert not raw.closed
            raw.starttls()
            raw.open_stream()
            raw.features()
    finally:
        for raw in held:
            raw.close()
    await wait_until_serves(server)


async def test_extra_connection_on_tls_port_is_closed(server):
    held = hold(server)
    try:
        s = socket.create_connection((HOST, server.c2s_tls_port), timeout=5)
        try:
            s.settimeout(10)
            data = b""
            closed = False
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        closed = True
                        break
                    data += chunk
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            except (TimeoutError, socket.timeout):
                pass
            assert closed, "4th connection on the direct-TLS port was not closed within 10s"
        finally:
            s.close()
    finally:
        for raw in held:
            raw.close()
    await wait_until_serves(server)


async def test_limit_is_per_source_address(server, new_user):
    held = hold(server)
    try:
        other = RawXMPP(server, source_ip="127.0.0.2")
        try:
            jid = other.login(new_user("otherip"))
            assert jid, "login from 127.0.0.2 failed"
        finally:
            other.close()
    finally:
        for raw in held:
            raw.close()


async def test_slots_are_freed_when_connections_close(server, new_user):
    for _round in range(3):
        held = hold(server)
        for raw in held:
            raw.close()
        await asyncio.sleep(0.3)
    await wait_until_serves(server)
