//! Tests for the framer: events, namespaces, decoding, limits, restricted XML, chunking
//! invariance, poisoning, linear-time byte-at-a-time feeding, and a no-panic fuzz loop.

use super::*;
use crate::element::Node;
use crate::{NS_STREAM, NS_XML};

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// Feed `chunks` in order, draining events after each; stop at the first error.
fn run_chunks(limits: Limits, chunks: &[&[u8]]) -> (Vec<Event>, Option<XmlError>) {
    let mut f = Framer::new(limits);
    let mut out = Vec::new();
    for c in chunks {
        f.feed(c);
        loop {
            match f.next_event() {
                Ok(Some(ev)) => out.push(ev),
                Ok(None) => break,
                Err(e) => {
                    // Poisoned: keeps returning the same error.
                    assert_eq!(f.next_event(), Err(e.clone()));
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fn run(input: &[u8]) -> (Vec<Event>, Option<XmlError>) {
    run_chunks(Limits::default(), &[input])
}

fn run_with(limits: Limits, input: &[u8]) -> (Vec<Event>, Option<XmlError>) {
    run_chunks(limits, &[input])
}

/// Every two-chunk split and the byte-at-a-time feed give the same result as one chunk.
fn assert_split_invariant(limits: &Limits, input: &[u8]) -> (Vec<Event>, Option<XmlError>) {
    let whole = run_chunks(limits.clone(), &[input]);
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        assert_eq!(run_chunks(limits.clone(), &[a, b]), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunks(limits.clone(), &bytes), whole, "byte at a time");
    whole
}

fn stanzas(events: &[Event]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stanza(el) => Some(el),
            _ => None,
        })
        .collect()
}

/// Parse a single stanza inside the standard header.
fn one(stanza: &str) -> Result<Element, XmlError> {
    let (ev, err) = run(format!("{HDR}{stanza}").as_bytes());
    if let Some(e) = err {
        return Err(e);
    }
    let s = stanzas(&ev);
    assert_eq!(s.len(), 1, "{ev:?}");
    Ok(s[0].clone())
}

fn err_of(input: &str) -> XmlError {
    let (_, err) = run(input.as_bytes());
    err.unwrap_or_else(|| panic!("expected an error for {input:?}"))
}

fn stanza_err(stanza: &str) -> XmlError {
    err_of(&format!("{HDR}{stanza}"))
}

#[test]
fn full_stream() {
    let input = format!(
        "{HDR}\n<message to='a@b' type='chat' id='1'><body>Hi</body></message> \n\t\
         <presence/>  <iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
    );
    let (ev, err) = run(input.as_bytes());
    assert_eq!(err, None);
    assert_eq!(ev.len(), 5, "{ev:?}");
    match &ev[0] {
        Event::StreamStart(h) => {
            assert_eq!(h.default_ns, "jabber:client");
            assert_eq!(h.stream_ns, NS_STREAM);
            assert_eq!(h.to.as_deref(), Some("example.com"));
            assert_eq!(h.from, None);
            assert_eq!(h.version.as_deref(), Some("1.0"));
            assert_eq!(h.lang.as_deref(), Some("en"));
            assert!(h.attrs.iter().any(|(k, v)| k == "xml:lang" && v == "en"));
            assert!(
                h.attrs
                    .iter()
                    .any(|(k, v)| k == "xmlns" && v == "jabber:client")
            );
        }
        other => panic!("{other:?}"),
    }
    let s = stanzas(&ev);
    assert_eq!(s[0].name, "message");
    assert_eq!(s[0].ns, "jabber:client");
    assert_eq!(
        s[0].attrs,
        vec![
            ("to".to_string(), "a@b".to_string()),
            ("type".to_string(), "chat".to_string()),
            ("id".to_string(), "1".to_string()),
        ]
    );
    assert_eq!(
        s[0].child("body", "jabber:client").map(|b| b.text()),
        Some("Hi".into())
    );
    assert!(s[1].is("presence", "jabber:client"));
    assert!(s[2].child("ping", "urn:xmpp:ping").is_some());
    assert_eq!(ev[4], Event::StreamEnd);
}

#[test]
fn header_without_declaration_and_with_header_id() {
    let (ev, err) = run(
        b"  <stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:server' from='a.example' id='abc'>",
    );
    assert_eq!(err, None);
    match &ev[..] {
        [Event::StreamStart(h)] => {
            assert_eq!(h.default_ns, "jabber:server");
            assert_eq!(h.from.as_deref(), Some("a.example"));
            assert_eq!(h.id.as_deref(), Some("abc"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn self_closing_header_is_start_and_end() {
    let (ev, err) = run(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>");
    assert_eq!(err, None);
    assert!(matches!(&ev[..], [Event::StreamStart(_), Event::StreamEnd]));
}

#[test]
fn round_trips() {
    let cases = [
        "<message to='a@b/c' from='d@e' type='chat' xml:lang='fr'><body>1 &lt; 2 &amp; \"q\" 'a' &gt;</body>\
         <thread>t</thread><x xmlns='jabber:x:data' type='form'><field var='a'><value>v</value></field></x></message>",
        "<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A &amp; B'>\
         <group>Friends</group></item></query></iq>",
        "<presence><show>away</show><status>Ünïcödé 😀 中文</status>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        "<message><body>  spaced\n\ttext  </body></message>",
        "<message><body a='tab&#9;nl&#10;cr&#13;'>x</body></message>",
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
    ];
    for c in cases {
        let e1 = one(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        let bytes = e1.to_bytes("jabber:client");
        let text = String::from_utf8(bytes).unwrap();
        let e2 = one(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(e1, e2, "{c}\n{text}");
    }
}

#[test]
fn split_at_every_offset() {
    let inputs = [
        format!(
            "{HDR}<message to='a@b' id=\"q\"><body>héllo 😀 &amp; &#x1F600; &lt;</body>\
             <x xmlns:p='urn:p' p:a='1'><p:y><![CDATA[<raw> ]] ]]]>z</p:y></x></message> \
             <presence/>\r\n<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             </stream:error></stream:stream>  "
        ),
        format!("{HDR}<message><body>a</bodx></message>"),
        format!("{HDR}<message><!-- c --></message>"),
        format!("{HDR}<message><body>&foo;</body></message>"),
        format!("{HDR}<message>\u{e9}\u{1F600}\u{e9}</message>"),
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>]><stream:stream>".to_string(),
    ];
    let limits = Limits::default();
    for input in &inputs {
        assert_split_invariant(&limits, input.as_bytes());
    }
    let (ev, err) = assert_split_invariant(&limits, inputs[0].as_bytes());
    assert_eq!(err, None);
    assert_eq!(ev.len(), 5);
    let m = stanzas(&ev)[0];
    assert_eq!(
        m.child("body", "jabber:client").unwrap().text(),
        "héllo 😀 & 😀 <"
    );
    let x = m.child("x", "jabber:client").unwrap();
    assert_eq!(x.attr("p:a"), Some("1"));
    assert_eq!(x.child("y", "urn:p").unwrap().text(), "<raw> ]] ]z");
    // Invalid UTF-8 split around: every chunking reports it at the same point.
    let mut bad = format!("{HDR}<message><body>ok</body></message><message>").into_bytes();
    bad.extend_from_slice(&[0xE2, 0x82]);
    bad.extend_from_slice(b"x</message>");
    let (ev, err) = assert_split_invariant(&limits, &bad);
    assert_eq!(ev.len(), 2);
    assert_eq!(err, Some(XmlError::InvalidUtf8));
    // Limits too.
    let small = Limits {
        max_stanza_bytes: 40,
        max_name_len: 6,
        ..Limits::default()
    };
    let input = format!("{HDR}<message><body>0123456789012345</body></message>");
    let (_, err) = assert_split_invariant(&small, input.as_bytes());
    assert!(matches!(err, Some(XmlError::LimitExceeded(_))), "{err:?}");
}

#[test]
fn multibyte_utf8_split_inside_char() {
    let input = format!("{HDR}<message><body>€😀</body></message>");
    let bytes = input.as_bytes();
    let pos = input.find('😀').unwrap();
    for k in pos..pos + 4 {
        let (ev, err) = run_chunks(Limits::default(), &[&bytes[..k], &bytes[k..]]);
        assert_eq!(err, None);
        assert_eq!(stanzas(&ev)[0].elements().next().unwrap().text(), "€😀");
    }
}

#[test]
fn entities_and_char_refs() {
    let e = one("<message id='&lt;&gt;&amp;&quot;&apos;&#65;&#x42;'><body>&lt;&gt;&amp;&quot;&apos;&#65;&#x1F600;&#xe9;</body></message>").unwrap();
    assert_eq!(e.attr("id"), Some("<>&\"'AB"));
    assert_eq!(e.elements().next().unwrap().text(), "<>&\"'A😀é");
}

#[test]
fn whitespace_normalization() {
    let e = one("<message id='a\tb\nc\r\nd'><body>x\r\ny\rz</body></message>").unwrap();
    assert_eq!(e.attr("id"), Some("a b c d"));
    assert_eq!(e.elements().next().unwrap().text(), "x\ny\nz");
}

#[test]
fn cdata_becomes_text() {
    let e = one("<message><body>a<![CDATA[<b>&amp;]]>c<![CDATA[]]></body></message>").unwrap();
    let body = e.elements().next().unwrap();
    assert_eq!(body.children, vec![Node::Text("a<b>&amp;c".into())]);
    assert!(matches!(
        stanza_err("<![CDATA[x]]>"),
        XmlError::NotWellFormed(_)
    ));
    assert!(matches!(
        stanza_err("<message><![CDAT[x]]></message>"),
        XmlError::NotWellFormed(_)
    ));
}

#[test]
fn namespaces_and_prefixes() {
    let e = one("<iq><query xmlns='jabber:iq:roster'><item jid='a'/></query></iq>").unwrap();
    let q = e.child("query", "jabber:iq:roster").unwrap();
    assert!(q.child("item", "jabber:iq:roster").is_some());

    let e = one("<message xmlns:x='urn:x'><x:foo x:attr='1' xml:lang='de'><x:bar xmlns:x='urn:y'/><baz/></x:foo><x:q/></message>").unwrap();
    let foo = e.child("foo", "urn:x").unwrap();
    assert_eq!(
        foo.attrs,
        vec![
            ("x:attr".into(), "1".into()),
            ("xml:lang".into(), "de".into())
        ]
    );
    assert!(foo.child("bar", "urn:y").is_some());
    assert!(foo.child("baz", "jabber:client").is_some());
    assert!(e.child("q", "urn:x").is_some());
    assert!(e.attrs.is_empty(), "xmlns declarations are not attributes");

    let e = one(
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>",
    )
    .unwrap();
    assert!(e.is("features", NS_STREAM));
    let e = one(
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    )
    .unwrap();
    assert!(e.is("error", NS_STREAM));

    let e = one("<message><a xmlns=''><b/></a></message>").unwrap();
    assert!(e.child("a", "").unwrap().child("b", "").is_some());
    let e = one("<xml:x/>").unwrap();
    assert!(e.is("x", NS_XML));

    // Prefix declared on the stream header.
    let input = "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
        xmlns:stream='http://etherx.jabber.org/streams'><db:result from='a' to='b'>key</db:result>";
    let (ev, err) = run(input.as_bytes());
    assert_eq!(err, None);
    assert!(stanzas(&ev)[0].is("result", "jabber:server:dialback"));

    for bad in [
        "<foo:message/>",
        "<message><p:x/></message>",
        "<message p:a='1'/>",
        "<message xmlns:p=''/>",
        "<message xmlns:xmlns='urn:x'/>",
        "<message xmlns:xml='urn:x'/>",
        "<message><a:b:c xmlns:a='u'/></message>",
        "<message xmlns:p='u'><p:x></x></message>",
    ] {
        assert!(
            matches!(stanza_err(bad), XmlError::NotWellFormed(_)),
            "{bad}"
        );
    }
}

#[test]
fn limits_enforced() {
    let base = Limits::default();
    // Stanza bytes: exactly at the limit passes, one over fails.
    let st = "<message><body>0123456789</body></message>";
    let ok = Limits {
        max_stanza_bytes: st.len(),
        ..base.clone()
    };
    assert_eq!(run_with(ok, format!("{HDR}{st}").as_bytes()).1, None);
    let over = Limits {
        max_stanza_bytes: st.len() - 1,
        ..base.clone()
    };
    assert!(matches!(
        run_with(over, format!("{HDR}{st}").as_bytes()).1,
        Some(XmlError::LimitExceeded(_))
    ));
    // A partial stanza beyond the limit fails before it ends.
    let small = Limits {
        max_stanza_bytes: 100,
        ..base.clone()
    };
    let mut f = Framer::new(small);
    f.feed(HDR.as_bytes());
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    f.feed(b"<message><body>");
    assert_eq!(f.next_event(), Ok(None));
    f.feed(&[b'a'; 200]);
    assert!(matches!(f.next_event(), Err(XmlError::LimitExceeded(_))));
    assert_eq!(f.buffered(), 0, "poisoned framer drops its buffer");

    let depth = Limits {
        max_depth: 3,
        ..base.clone()
    };
    assert_eq!(
        run_with(depth.clone(), format!("{HDR}<a><b><c/></b></a>").as_bytes()).1,
        None
    );
    assert!(matches!(
        run_with(depth, format!("{HDR}<a><b><c><d/></c></b></a>").as_bytes()).1,
        Some(XmlError::LimitExceeded(_))
    ));
    // The standard header has five attributes; the limit applies to it too.
    let attrs = Limits {
        max_attrs: 5,
        ..base.clone()
    };
    assert_eq!(
        run_with(
            attrs.clone(),
            format!("{HDR}<a v='0' w='0' x='1' y='2' z='3'/>").as_bytes()
        )
        .1,
        None
    );
    assert!(matches!(
        run_with(
            Limits {
                max_attrs: 4,
                ..base.clone()
            },
            HDR.as_bytes()
        )
        .1,
        Some(XmlError::LimitExceeded(_))
    ));
    assert!(matches!(
        run_with(
            attrs,
            format!("{HDR}<a u='0' v='0' w='0' x='1' y='2' z='3'/>").as_bytes()
        )
        .1,
        Some(XmlError::LimitExceeded(_))
    ));
    let ns = Limits {
        max_ns_decls: 1,
        ..base.clone()
    };
    // The standard header has two declarations.
    assert!(matches!(
        run_with(ns.clone(), HDR.as_bytes()).1,
        Some(XmlError::LimitExceeded(_))
    ));
    let ns2 = Limits {
        max_ns_decls: 2,
        ..base.clone()
    };
    assert_eq!(
        run_with(
            ns2.clone(),
            format!("{HDR}<a xmlns='u' xmlns:p='v'/>").as_bytes()
        )
        .1,
        None
    );
    assert!(matches!(
        run_with(
            ns2,
            format!("{HDR}<a xmlns='u' xmlns:p='v' xmlns:q='w'/>").as_bytes()
        )
        .1,
        Some(XmlError::LimitExceeded(_))
    ));
    // "stream:stream" is 13 bytes.
    let name = Limits {
        max_name_len: 13,
        ..base.clone()
    };
    assert_eq!(
        run_with(
            name.clone(),
            format!("{HDR}<abcdefghijklm abcdefghijklm='1'/>").as_bytes()
        )
        .1,
        None
    );
    for st in [
        "<abcdefghijklmn/>",
        "<a abcdefghijklmn='1'/>",
        "<a></abcdefghijklmn>",
    ] {
        assert!(
            matches!(
                run_with(name.clone(), format!("{HDR}{st}").as_bytes()).1,
                Some(XmlError::LimitExceeded(_))
            ),
            "{st}"
        );
    }
    let hdr = Limits {
        max_header_bytes: 64,
        ..base.clone()
    };
    let (ev, err) = run_with(hdr.clone(), HDR.as_bytes());
    assert!(ev.is_empty());
    assert!(matches!(err, Some(XmlError::LimitExceeded(_))));
    // An endless header fails without waiting for '>'.
    let mut f = Framer::new(hdr);
    f.feed(b"<stream:stream to='");
    assert_eq!(f.next_event(), Ok(None));
    f.feed(&[b'x'; 100]);
    assert!(matches!(f.next_event(), Err(XmlError::LimitExceeded(_))));
}

#[test]
fn restricted_xml() {
    let r = |e: XmlError| matches!(e, XmlError::RestrictedXml(_));
    assert!(r(err_of(
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><stream:stream/>"
    )));
    assert!(r(err_of("<!DOCTYPE stream>")));
    assert!(r(err_of("<!-- hi --><stream:stream/>")));
    assert!(r(stanza_err("<!-- keepalive -->")));
    assert!(r(stanza_err("<message><!-- x --></message>")));
    assert!(r(stanza_err("<message><!ENTITY x 'y'></message>")));
    assert!(r(stanza_err("<?php echo 1; ?>")));
    assert!(r(stanza_err("<message><?pi x?></message>")));
    assert!(r(err_of("<?xml-stylesheet href='a'?><stream:stream/>")));
    assert!(r(err_of(
        "<?xml version='1.0'?><?xml version='1.0'?><stream:stream/>"
    )));
    assert!(r(stanza_err("<message><body>&lol;</body></message>")));
    assert!(r(stanza_err("<message a='&nbsp;'/>")));
}

#[test]
fn malformed_input() {
    let nwf = |e: XmlError| matches!(e, XmlError::NotWellFormed(_));
    for st in [
        "<message><body>a</body></messag>",
        "<message></body>",
        "<message a='1' a='2'/>",
        "<message a='1'b='2'/>",
        "<message a=1/>",
        "<message a='<'/>",
        "<message>&#0;</message>",
        "<message>&#xD800;</message>",
        "<message>&#x110000;</message>",
        "<message>&#xFFFE;</message>",
        "<message a='&#1;'/>",
        "<message>&amp</message>",
        "<message>& </message>",
        "<message>&#;</message>",
        "<message>&#xZZ;</message>",
        "<message>\u{1}</message>",
        "hello",
        "<1message/>",
        "< message/>",
        "<message/ >",
        "</message>",
    ] {
        assert!(nwf(stanza_err(st)), "{st}: {:?}", stanza_err(st));
    }
    // Text at the top level, and data after the stream end.
    assert!(nwf(err_of(&format!("{HDR}<presence/>text"))));
    assert!(nwf(err_of(&format!("{HDR}</stream:stream><presence/>"))));
    assert!(nwf(err_of(&format!("{HDR}</stream>"))));
    assert!(nwf(err_of("</stream:stream>")));
    // Whitespace after the end is fine.
    assert_eq!(run(format!("{HDR}</stream:stream>\n ").as_bytes()).1, None);
}

#[test]
fn invalid_utf8_and_encoding() {
    for bad in [
        &[0xFFu8][..],
        &[0xC0, 0x80],
        &[0xED, 0xA0, 0x80],
        &[0xF4, 0x90, 0x80, 0x80],
    ] {
        let mut input = format!("{HDR}<message><body>").into_bytes();
        input.extend_from_slice(bad);
        assert_eq!(run(&input).1, Some(XmlError::InvalidUtf8), "{bad:?}");
    }
    assert_eq!(
        err_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>"),
        XmlError::InvalidUtf8
    );
    assert_eq!(XmlError::InvalidUtf8.condition(), "unsupported-encoding");
    let ok = "<?xml version='1.0' encoding='utf-8' standalone='yes'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_eq!(run(ok.as_bytes()).1, None);
    assert!(matches!(
        err_of("<?xml encoding='UTF-8'?>"),
        XmlError::NotWellFormed(_)
    ));
}

#[test]
fn wrong_root() {
    let inv = |e: XmlError| matches!(e, XmlError::InvalidNamespace(_));
    assert!(inv(err_of("<stream:stream xmlns:stream='urn:wrong'>")));
    assert!(inv(err_of(
        "<stream:foo xmlns:stream='http://etherx.jabber.org/streams'>"
    )));
    assert!(inv(err_of("<message xmlns='jabber:client'>")));
    assert!(matches!(
        err_of("<stream:stream xmlns='jabber:client'>"),
        XmlError::NotWellFormed(_)
    ));
}

#[test]
fn poisoning_and_reset() {
    let mut f = Framer::new(Limits::default());
    f.feed(HDR.as_bytes());
    f.feed(b"<message><!-- x --></message>");
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    let e = f.next_event().unwrap_err();
    assert!(matches!(e, XmlError::RestrictedXml(_)));
    f.feed(b"<presence/>");
    assert_eq!(f.next_event(), Err(e.clone()));
    assert_eq!(f.next_event(), Err(e));
    f.reset();
    assert_eq!(f.buffered(), 0);
    f.feed(HDR.as_bytes());
    f.feed(b"<presence/>");
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
    // Reset mid-stream (STARTTLS): a new header is expected, old partial data is gone.
    f.feed(b"<message><bo");
    assert_eq!(f.next_event(), Ok(None));
    assert!(f.buffered() > 0);
    f.reset();
    f.feed(b"<presence/>");
    assert!(matches!(f.next_event(), Err(XmlError::InvalidNamespace(_))));
}

#[test]
fn keepalives_and_buffered() {
    let mut f = Framer::new(Limits::default());
    f.feed(HDR.as_bytes());
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    assert_eq!(f.buffered(), 0);
    for _ in 0..1000 {
        f.feed(b" \n\t\r ");
        assert_eq!(f.next_event(), Ok(None));
        assert_eq!(f.buffered(), 0);
    }
    f.feed(b"  <message><bo");
    assert_eq!(f.next_event(), Ok(None));
    assert_eq!(f.buffered(), "<message><bo".len());
    f.feed(b"dy>x</body></message>  <presence");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
    assert_eq!(f.next_event(), Ok(None));
    assert_eq!(f.buffered(), "<presence".len());
    f.feed(b"/></stream:stream>");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
    assert_eq!(f.next_event(), Ok(Some(Event::StreamEnd)));
    assert!(f.is_closed());
    assert_eq!(f.next_event(), Ok(None));
    assert_eq!(f.buffered(), 0);
}

#[test]
fn byte_at_a_time_is_linear() {
    let mut f = Framer::new(Limits::default());
    f.feed(HDR.as_bytes());
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    let mut stanza = String::from("<message><body>");
    while stanza.len() < 200_000 {
        stanza.push_str("lorem ipsum &amp; <b x='1'>dolor</b> sit amet é ");
    }
    stanza.push_str("</body></message>");
    let t = std::time::Instant::now();
    let mut got = None;
    for b in stanza.as_bytes() {
        f.feed(std::slice::from_ref(b));
        if let Some(ev) = f.next_event().unwrap() {
            got = Some(ev);
        }
    }
    let elapsed = t.elapsed();
    assert!(matches!(got, Some(Event::Stanza(_))));
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "took {elapsed:?}"
    );
}

#[test]
fn many_stanzas_in_one_chunk() {
    let mut input = String::from(HDR);
    for i in 0..2000 {
        input.push_str(&format!("<message id='{i}'><body>m{i}</body></message>"));
    }
    let (ev, err) = run(input.as_bytes());
    assert_eq!(err, None);
    assert_eq!(ev.len(), 2001);
    assert_eq!(stanzas(&ev)[1999].attr("id"), Some("1999"));
}

/// Tiny xorshift PRNG so the fuzz test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_no_panic_and_chunking_invariant() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seed = format!(
        "{HDR}<message to='a@b' xmlns:p='urn:p'><body>h&amp;i &#x41; é😀</body><p:x p:y='1'/>\
         <![CDATA[c]]></message><presence/></stream:stream>"
    );
    let alphabet = b"<>/='\"&;#x:![]CDATA-? \n\rabmsxlnp\xC3\xA9\xFF\x00";
    let limits = Limits {
        max_stanza_bytes: 200,
        max_depth: 4,
        max_attrs: 3,
        max_ns_decls: 2,
        max_name_len: 12,
        max_header_bytes: 300,
    };
    for iter in 0..3000 {
        let mut input: Vec<u8> = if iter % 4 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            seed.as_bytes().to_vec()
        };
        for _ in 0..rng.below(6) {
            if input.is_empty() {
                break;
            }
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = alphabet[rng.below(alphabet.len())],
                1 => input.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => {
                    input.remove(at);
                }
            }
        }
        let lim = if iter % 2 == 0 {
            Limits::default()
        } else {
            limits.clone()
        };
        let whole = run_chunks(lim.clone(), &[&input]);
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(16));
            let (a, b) = rest.split_at(n);
            chunks.push(a);
            rest = b;
        }
        assert_eq!(
            run_chunks(lim, &chunks),
            whole,
            "input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn release_idle_between_stanzas_keeps_parsing() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'>");
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    f.release_idle();
    f.feed(b"<message to='a@b'><body>hi</body></message><presence");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
    assert!(matches!(f.next_event(), Ok(None)));
    // Mid-stanza: nothing is dropped.
    f.release_idle();
    f.feed(b"/>");
    match f.next_event() {
        Ok(Some(Event::Stanza(p))) => assert_eq!(p.name, "presence"),
        other => panic!("expected presence, got {other:?}"),
    }
    f.release_idle();
    assert_eq!(f.buffered(), 0);
    f.feed(b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
}

#[test]
fn release_idle_frees_every_buffer() {
    let mut f = Framer::new(Limits::default());
    f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'>");
    assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
    f.feed(b"<message xmlns:a='urn:a'><body>hi</body><a:x><a:y/></a:x></message>");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
    f.release_idle();
    assert_eq!(f.held_capacity(), 0);
    f.feed(b"<presence/>");
    assert!(matches!(f.next_event(), Ok(Some(Event::Stanza(_)))));
}
