"""Hostile and malformed input on raw sockets (RFC 6120 §4.9, §11).

Default limits (max_stanza_bytes = 262144). Covers: an oversized stanza
(after login and before authentication) -> policy-violation; nesting deeper
than 32 -> policy-violation; DOCTYPE / billion laughs -> restricted-xml
(before and after TLS); comments, processing instructions and undeclared
entities -> restricted-xml; invalid UTF-8 -> unsupported-encoding or
not-well-formed; a wrong stream namespace -> invalid-namespace; an unknown
top-level element -> unsupported-stanza-type; garbage instead of XML.
After every case the server still serves a normal client.
"""

import pytest

from rampart_harness import NS_SASL, RawXMPP, assert_server_serves

BILLION_LAUGHS = (
    "<?xml version='1.0'?>"
    "<!DOCTYPE lolz ["
    " <!ENTITY lol 'lol'>"
    " <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
    " <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
    " <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
    " <!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
    " <!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
    " <!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
    " <!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
    " <!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
    " <!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"
    "]>"
    "<stream:stream to='localhost' version='1.0' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams'>"
    "<message to='x@localhost'><body>&lol9;</body></message>"
)


def logged_in(server, new_user):
    u = new_user("hostile")
    raw = RawXMPP(server)
    raw.login(u)
    return raw


def assert_stream_error(raw: RawXMPP, expected, timeout: float = 15):
    raw.read_until_close(timeout)
    cond = raw.stream_error_anywhere()
    allowed = (expected,) if isinstance(expected, str) else tuple(expected)
    assert cond in allowed, (
        f"expected stream error {' or '.join(allowed)}, got {cond!r}; {raw.describe()}")
    assert raw.closed, f"the server did not close the connection after the stream error; {raw.describe()}"


# ------------------------------------------------------------ size limits
async def test_oversized_stanza_after_login(server, new_user):
    raw = logged_in(server, new_user)
    try:
        big = "<message to='nobody@localhost' type='chat'><body>" + "A" * 300_000 + \
              "</body></message>"
        raw.send_chunked(big)
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_oversized_element_before_auth(server):
    raw = RawXMPP(server)
    try:
        raw.negotiate_tls()
        raw.send_chunked(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>" + "QUFB" * 80_000 + "</auth>")
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_oversized_element_before_tls(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream()
        raw.features()
        raw.send_chunked("<iq type='get' id='x'><query xmlns='urn:x'>" + "B" * 300_000 + "</query></iq>")
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_endless_stream_header_attribute(server):
    """An opening tag that never ends also counts against the size limit."""
    raw = RawXMPP(server)
    try:
        raw.send_chunked("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                         "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                         "junk='" + "j" * 400_000)
        raw.read_until_close(15)
        assert raw.closed, "the server kept reading a 400 kB stream header"
    finally:
        raw.close()
    await assert_server_serves(server)


# ---------------------------------------------------------------- nesting
async def test_deep_nesting_after_login(server, new_user):
    raw = logged_in(server, new_user)
    try:
        depth = 200
        raw.send_chunked("<message to='nobody@localhost'>" + "<a>" * depth + "x" +
                         "</a>" * depth + "</message>")
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_just_over_nesting_limit(server, new_user):
    """33 levels inside the stanza exceed 'nesting deeper than 32' however
    the stream root is counted."""
    raw = logged_in(server, new_user)
    try:
        depth = 33
        raw.send("<message to='nobody@localhost'>" + "<a>" * depth + "x" + "</a>" * depth +
                 "</message>")
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_nesting_bomb_unclosed(server, new_user):
    """A million opening tags: must be cut off, not buffered."""
    raw = logged_in(server, new_user)
    try:
        raw.send_chunked("<a>" * 1_000_000)
        assert_stream_error(raw, "policy-violation")
    finally:
        raw.close()
    await assert_server_serves(server)


# ---------------------------------------------------------- restricted XML
async def test_billion_laughs_before_tls(server):
    raw = RawXMPP(server)
    try:
        raw.send(BILLION_LAUGHS)
        assert_stream_error(raw, "restricted-xml")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_doctype_after_tls(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream()
        raw.features()
        raw.starttls()
        raw._reset_parser()
        raw.send(BILLION_LAUGHS)
        assert_stream_error(raw, "restricted-xml")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_doctype_inside_stream_after_login(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send("<!DOCTYPE foo [<!ENTITY x 'y'>]><message to='nobody@localhost'><body>&x;</body></message>")
        assert_stream_error(raw, ("restricted-xml", "not-well-formed"))
    finally:
        raw.close()
    await assert_server_serves(server)


@pytest.mark.parametrize("payload", [
    "<!-- a comment -->",
    "<?php echo 'pi'; ?>",
], ids=["comment", "processing-instruction"])
async def test_comments_and_pis_are_restricted_xml(server, new_user, payload):
    raw = logged_in(server, new_user)
    try:
        raw.send(payload + "<message to='nobody@localhost'><body>x</body></message>")
        assert_stream_error(raw, "restricted-xml")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_undeclared_entity_reference(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send("<message to='nobody@localhost'><body>&xxe;</body></message>")
        assert_stream_error(raw, ("restricted-xml", "not-well-formed"))
    finally:
        raw.close()
    await assert_server_serves(server)


# ------------------------------------------------------- encoding / syntax
async def test_invalid_utf8(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send(b"<message to='nobody@localhost'><body>\xff\xfe\xc3\x28 bad</body></message>")
        assert_stream_error(raw, ("unsupported-encoding", "not-well-formed"))
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_invalid_utf8_in_stream_header(server):
    raw = RawXMPP(server)
    try:
        raw.send(b"<?xml version='1.0'?><stream:stream to='local\xc0\xafhost' version='1.0' "
                 b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        assert_stream_error(raw, ("unsupported-encoding", "not-well-formed"))
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_mismatched_end_tag(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send("<message to='nobody@localhost'><body>x</bodie></message>")
        assert_stream_error(raw, "not-well-formed")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_garbage_instead_of_xml(server):
    raw = RawXMPP(server)
    try:
        raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        raw.read_until_close(15)
        assert raw.closed, "server kept an HTTP request open"
        cond = raw.stream_error_anywhere()
        assert cond in (None, "not-well-formed", "bad-format"), raw.describe()
    finally:
        raw.close()
    await assert_server_serves(server)


# --------------------------------------------------------- stream header
async def test_wrong_default_namespace(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream(ns="jabber:wrong")
        assert_stream_error(raw, "invalid-namespace")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_wrong_stream_namespace(server):
    raw = RawXMPP(server)
    try:
        raw.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                 "xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>")
        assert_stream_error(raw, "invalid-namespace")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_wrong_namespace_after_tls(server):
    raw = RawXMPP(server)
    try:
        raw.open_stream()
        raw.features()
        raw.starttls()
        raw.open_stream(ns="jabber:wrong")
        assert_stream_error(raw, "invalid-namespace")
    finally:
        raw.close()
    await assert_server_serves(server)


# ------------------------------------------------------ unknown elements
async def test_unknown_top_level_element_after_login(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send("<foo xmlns='urn:example:unknown'><bar/></foo>")
        assert_stream_error(raw, "unsupported-stanza-type")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_unknown_element_in_client_namespace_after_login(server, new_user):
    raw = logged_in(server, new_user)
    try:
        raw.send("<notastanza to='nobody@localhost'/>")
        assert_stream_error(raw, "unsupported-stanza-type")
    finally:
        raw.close()
    await assert_server_serves(server)


async def test_many_hostile_connections_in_a_row(server, new_user):
    """A burst of short-lived hostile connections does not wedge the server."""
    for i in range(30):
        raw = RawXMPP(server)
        try:
            raw.send(b"\x00\xff<<<" if i % 3 == 0 else BILLION_LAUGHS if i % 3 == 1
                     else b"<stream:stream xmlns='jabber:wrong'>")
            raw.read_until_close(5)
        finally:
            raw.close()
    await assert_server_serves(server)
