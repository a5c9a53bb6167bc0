"""A hibernating session's queue is bounded (`limits.resume_queue_limit`).

A XEP-0198 session whose connection broke hibernates, and what is sent to it queues until it
is resumed. Past the limit the session ends with the `resource-constraint` stream error
(queued behind what it already holds), and later messages are refused by it: the router
delivers them elsewhere, here to offline storage, so a new login gets them at once. A
resumption still gets what was queued, then the stream error. No message is lost.
"""

import asyncio
import xml.etree.ElementTree as ET

from test_stream_management import NS_SM, SmClient, sender

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"

LIMIT = 12
# A long hibernation: everything below happens while the session still waits.
RAMPART_LIMITS = {"resume_timeout_secs": 60, "resume_queue_limit": LIMIT}


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
