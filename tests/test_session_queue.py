"""A session's outbound queue is bounded: a hibernating session's by
`limits.resume_queue_limit`, a live one's by `limits.session_queue_limit`.

A XEP-0198 session whose connection broke hibernates, and what is sent to it queues until it
is resumed. Past the limit the session ends with the `resource-constraint` stream error
(queued behind what it already holds), and later messages are refused by it: the router
delivers them elsewhere, here to offline storage, so a new login gets them at once. A
resumption still gets what was queued, then the stream error. No message is lost.

A live session whose client stops reading fills its queue the same way while the server's
writes to it block. The session then ends at once with `resource-constraint`, and everything
it was sent goes to the account's other resource.
"""

import asyncio
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET

from test_stream_management import NS_SM, SmClient, sender

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"

LIMIT = 12
LIVE_LIMIT = 60
BODY_TAG = re.compile(rb"<body[^>]*>(s\d{3}) ")
# A long hibernation: everything below happens while the session still waits. The live
# limit must stay above the offline limit (a login's offline messages are queued at once).
RAMPART_LIMITS = {"resume_timeout_secs": 60, "resume_queue_limit": LIMIT,
                  "session_queue_limit": LIVE_LIMIT, "offline_limit": 30}


async def test_full_queue_ends_the_hibernating_session_and_later_messages_go_offline(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await sender(clients, alice)
    b1 = SmClient(server, bob, resume_max=60)
    previd = b1.login_and_enable()
    b1.raw.close()  # the connection breaks; the session hibernates
    await asyncio.sleep(0.5)
    sent = [f"m{i:02}" for i in range(2 * LIMIT)]
    for body in sent:
        a.send_msg(bob.jid, body)
    await a.sync()

    # A new login gets the messages the full queue refused, from offline storage, while
    # the hibernating session still holds the first ones.
    later = await clients(bob, "later")
    await later.go_online()
    first = await later.messages.collect(1, lambda m: m["body"].startswith("m"), timeout=10)

    # Resuming gets what was queued, then the stream error.
    b2 = SmClient(server, bob, resume_max=60)
    resumed = b2.resume(previd, 0)
    assert resumed is not None and resumed.tag == f"{{{NS_SM}}}resumed", \
        ET.tostring(resumed) if resumed is not None else "no answer to <resume/>"
    while True:
        el = b2.raw.next_element(timeout=10)
        assert el is not None, f"the stream ended without an error after {b2.bodies}"
        if el.tag == f"{{{NS_STREAMS}}}error":
            break
        b2.take(el)
    assert el.find(f"{{{NS_STREAM_ERRORS}}}resource-constraint") is not None, ET.tostring(el)
    queued = b2.bodies
    assert 0 < len(queued) <= LIMIT, queued

    # Offline storage had the rest, in order: nothing was lost.
    rest = await later.messages.collect(len(sent) - len(queued) - 1, lambda m: m["body"].startswith("m"),
                                        timeout=10)
    tail = [m["body"] for m in first + rest]
    assert queued + tail == sent, (queued, tail)

def read_until_closed(raw, timeout: float) -> bytes:
    """Read a socket until the server closes it; fail if it stays open past `timeout`."""
    got = b""
    deadline = time.monotonic() + timeout
    raw.sock.settimeout(1)
    while True:
        assert time.monotonic() < deadline, f"the server kept the connection open ({len(got)} bytes read)"
        try:
            chunk = raw.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return got
        if not chunk:
            return got
        got += chunk


def collect_tags(raw, n: int, timeout: float) -> list[str]:
    """The first word of each message body arriving on `raw`'s socket, until `n` distinct
    ones or `timeout`. Scans the bytes instead of parsing them, so that it keeps up with
    a server writing megabytes (a slow reader would fill this session's queue too)."""
    tags: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    raw.sock.settimeout(0.5)
    while len(set(tags)) < n and time.monotonic() < deadline:
        try:
            chunk = raw.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        if not chunk:
            break
        pending += chunk
        tags += [m.decode() for m in BODY_TAG.findall(pending)]
        pending = pending[-64:]  # a tag cut at the chunk's end is found next time
    return tags


async def test_a_client_that_stops_reading_is_disconnected_and_nothing_is_lost(server, new_user, clients):
    alice, bob = new_user("alice"), new_user("bob")
    a = await sender(clients, alice)
    # Bob has two resources. One reads everything at once, in a thread of its own...
    other = SmClient(server, bob, resource="other", resume_max=60)
    other.login_and_enable()
    # ...and one logs in with a tiny receive window, then never reads again.
    stuck = SmClient(server, bob, resource="stuck", resume_max=60, rcvbuf=4096)
    stuck.login_and_enable()
    await asyncio.sleep(0.5)
    log_start = server.log_size()

    # Messages to the stuck resource, large enough to fill what the sockets absorb (the
    # server's send buffer grows to a few MiB), one write batch and the queue.
    sent = [f"s{i:03}" for i in range(160)]
    reader = asyncio.create_task(asyncio.to_thread(collect_tags, other.raw, len(sent), 120))
    for tag in sent:
        a.send_msg(f"{bob.jid}/stuck", tag + " " + "x" * 60000)
    await a.sync()

    # The server gave up on the stuck connection and closed it (its close is bounded too).
    await asyncio.to_thread(read_until_closed, stuck.raw, 45)
    assert "the client stopped reading and its queue is full" in server.log_text(log_start, limit=10**9)

    # Every message reached Bob's other resource: those the full queue refused, those it
    # still held, and those written to the stuck socket but never acknowledged.
    got = await reader
    assert sorted(set(got)) == sent, f"missing {sorted(set(sent) - set(got))}"
