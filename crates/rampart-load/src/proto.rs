//! Pure protocol decisions of the load generator: which SASL mechanism to pick from stream
//! features, the stanzas it writes, and the timestamp it embeds in (and reads back from)
//! message bodies. No I/O here, so all of it is unit-tested.

use rampart_proto::{Element, ns};
use rampart_sasl::Mechanism;

/// Marker at the start of every body the generator sends (version 1 of the format).
const BODY_TAG: &str = "rl1";

/// What the generator needs to know from one `<stream:features/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `<starttls/>` offered.
    pub starttls: bool,
    /// SASL mechanisms offered, in the server's order.
    pub mechanisms: Vec<String>,
    /// XEP-0440 channel-binding types, `None` when the server does not say.
    pub cb_types: Option<Vec<String>>,
    /// `<bind/>` offered (after SASL).
    pub bind: bool,
    /// RFC 3921 `<session/>` offered and not marked `<optional/>`.
    pub session_required: bool,
    /// XEP-0077 in-band registration offered.
    pub register: bool,
}

impl Features {
    /// Extract what we need from a `<stream:features/>` element.
    pub fn parse(f: &Element) -> Features {
        let mut out = Features::default();
        for c in f.elements() {
            if c.is("starttls", ns::TLS) {
                out.starttls = true;
            } else if c.is("mechanisms", ns::SASL) {
                out.mechanisms = rampart_proto::sasl::parse_mechanisms(c).unwrap_or_default();
            } else if c.is("sasl-channel-binding", ns::SASL_CB) {
                out.cb_types = rampart_proto::sasl::parse_channel_binding_feature(c).ok();
            } else if c.is("bind", ns::BIND) {
                out.bind = true;
            } else if c.is("session", ns::SESSION) {
                out.session_required = c.child("optional", ns::SESSION).is_none();
            } else if c.is("register", "http://jabber.org/features/iq-register") {
                out.register = true;
            }
        }
        out
    }
}

/// Which mechanism to use: `forced` if given (and offered), else the strongest offered one we
/// can do. `-PLUS` needs tls-exporter channel binding (`can_bind`: TLS 1.3) and the server
/// listing `tls-exporter` among its XEP-0440 channel-binding types: a server that offers -PLUS
/// without saying which binding it means may mean tls-unique (ejabberd 23.01 does, and fails
/// the login on TLS 1.3), so -PLUS is not guessed.
pub fn choose_mechanism(
    f: &Features,
    can_bind: bool,
    forced: Option<Mechanism>,
) -> Result<Mechanism, String> {
    let offered = |m: Mechanism| f.mechanisms.iter().any(|n| n == m.name());
    if let Some(m) = forced {
        return if offered(m) {
            Ok(m)
        } else {
            Err(format!(
                "{m} not offered (server offers {:?})",
                f.mechanisms
            ))
        };
    }
    let exporter_ok = f
        .cb_types
        .as_ref()
        .is_some_and(|t| t.iter().any(|x| x == "tls-exporter"));
    Mechanism::ALL
        .into_iter()
        .filter(|m| !m.is_plus() || (can_bind && exporter_ok))
        .find(|m| offered(*m))
        .ok_or_else(|| format!("no usable SASL mechanism in {:?}", f.mechanisms))
}

/// Our stream header (client to server).
pub fn client_stream_header(domain: &str) -> String {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream to='");
    rampart_xml::escape_attr(domain, &mut out);
    out.extend_from_slice(
        b"' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    String::from_utf8(out).unwrap_or_default()
}

/// Serialize a stanza for a `jabber:client` stream.
pub fn stanza_bytes(e: &Element) -> Vec<u8> {
    e.to_bytes(ns::CLIENT)
}

/// `<iq type='set'><bind><resource/></bind></iq>`.
pub fn bind_request(id: &str, resource: &str) -> Element {
    let bind = rampart_proto::bind::BindRequest {
        resource: Some(resource.to_owned()),
    };
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(bind.into())
}

/// RFC 3921 session establishment, for servers that still require it.
pub fn session_request(id: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(Element::new("session", ns::SESSION))
}

/// XEP-0077 registration of `username` with `password`.
pub fn register_request(id: &str, username: &str, password: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(
            Element::new("query", ns::REGISTER)
                .with_child(Element::new("username", ns::REGISTER).with_text(username))
                .with_child(Element::new("password", ns::REGISTER).with_text(password)),
        )
}

/// What the generator embeds in each body: run id, sequence number, send time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Random per run: bodies from earlier runs (offline messages) are recognised and skipped.
    pub run: u32,
    /// Per-pair sequence number.
    pub seq: u64,
    /// Send time in nanoseconds since the generator's clock epoch (monotonic).
    pub sent_ns: u64,
}

/// Write a message stanza carrying `stamp` to `out`. The body is padded with `x` to at least
/// `body_len` bytes. `to` must already be safe in an attribute (a bound JID is; it is
/// escaped anyway).
pub fn write_message(out: &mut Vec<u8>, to: &str, stamp: Stamp, body_len: usize) {
    use std::io::Write;
    out.extend_from_slice(b"<message type='chat' to='");
    rampart_xml::escape_attr(to, out);
    let _ = write!(out, "' id='m{}'><body>", stamp.seq);
    let start = out.len();
    let _ = write!(
        out,
        "{BODY_TAG} {:08x} {} {}",
        stamp.run, stamp.seq, stamp.sent_ns
    );
    let written = out.len() - start;
    if written < body_len {
        out.push(b' ');
        out.resize(out.len() + body_len - written - 1, b'x');
    }
    out.extend_from_slice(b"</body></message>");
}

/// Read a stamp back from a body written by [`write_message`].
pub fn parse_stamp(body: &str) -> Option<Stamp> {
    let mut it = body.split(' ');
    if it.next()? != BODY_TAG {
        return None;
    }
    let run = u32::from_str_radix(it.next()?, 16).ok()?;
    let seq = it.next()?.parse().ok()?;
    let sent_ns = it.next()?.parse().ok()?;
    Some(Stamp { run, seq, sent_ns })
}

/// The stamp of a received `<message/>` stanza, if it carries one.
pub fn message_stamp(e: &Element) -> Option<Stamp> {
    if e.name != "message" {
        return None;
    }
    let body = e.elements().find(|c| c.name == "body")?;
    match body.children.as_slice() {
        [rampart_proto::Node::Text(t)] => parse_stamp(t),
        _ => parse_stamp(&body.text()),
    }
}

/// A `<stream:error/>`'s condition name (for the error report).
pub fn stream_error_condition(e: &Element) -> String {
    e.elements()
        .find(|c| c.ns == ns::STREAMS && c.name != "text")
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "undefined-condition".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_xml::{Event, Framer, Limits};

    fn features(xml: &str) -> Features {
        let mut f = Framer::new(Limits::default());
        f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        f.feed(xml.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
        match f.next_event() {
            Ok(Some(Event::Stanza(e))) => Features::parse(&e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_prosody_like_features() {
        let f = features(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
             <register xmlns='http://jabber.org/features/iq-register'/></stream:features>",
        );
        assert!(f.starttls && f.register);
        assert!(f.mechanisms.is_empty());
        let f = features(
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
             </stream:features>",
        );
        assert_eq!(f.mechanisms, ["SCRAM-SHA-1", "PLAIN"]);
        assert_eq!(f.cb_types, None);
        let f = features(
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             <session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>",
        );
        assert!(f.bind && !f.session_required);
        let f = features(
            "<stream:features><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>",
        );
        assert!(f.session_required);
    }

    #[test]
    fn picks_strongest_usable_mechanism() {
        let mut f = Features {
            mechanisms: Mechanism::ALL.iter().map(|m| m.name().to_owned()).collect(),
            cb_types: Some(vec!["tls-server-end-point".into(), "tls-exporter".into()]),
            ..Features::default()
        };
        assert_eq!(
            choose_mechanism(&f, true, None),
            Ok(Mechanism::ScramSha256Plus)
        );
        // No channel binding possible (TLS 1.2): no -PLUS.
        assert_eq!(
            choose_mechanism(&f, false, None),
            Ok(Mechanism::ScramSha256)
        );
        // XEP-0440 says the server binds with something else only.
        f.cb_types = Some(vec!["tls-server-end-point".into()]);
        assert_eq!(choose_mechanism(&f, true, None), Ok(Mechanism::ScramSha256));
        // No XEP-0440 list (ejabberd 23.01): -PLUS might mean tls-unique; not guessed...
        f.cb_types = None;
        assert_eq!(choose_mechanism(&f, true, None), Ok(Mechanism::ScramSha256));
        // ...unless asked for.
        assert_eq!(
            choose_mechanism(&f, true, Some(Mechanism::ScramSha1Plus)),
            Ok(Mechanism::ScramSha1Plus)
        );
        f.cb_types = Some(vec!["tls-exporter".into()]);
        assert_eq!(
            choose_mechanism(&f, true, None),
            Ok(Mechanism::ScramSha256Plus)
        );

        let f = Features {
            mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-1".into(), "X-OAUTH2".into()],
            ..Features::default()
        };
        assert_eq!(choose_mechanism(&f, true, None), Ok(Mechanism::ScramSha1));
        assert_eq!(
            choose_mechanism(&f, true, Some(Mechanism::Plain)),
            Ok(Mechanism::Plain)
        );
        assert!(choose_mechanism(&f, true, Some(Mechanism::ScramSha256)).is_err());
        let none = Features {
            mechanisms: vec!["DIGEST-MD5".into()],
            ..Features::default()
        };
        assert!(choose_mechanism(&none, true, None).is_err());
    }

    #[test]
    fn stamp_round_trip_through_the_framer() {
        let stamp = Stamp {
            run: 0xdead_beef,
            seq: 42,
            sent_ns: 123_456_789_012,
        };
        let mut out = Vec::new();
        write_message(&mut out, "user2@example.test/r'1", stamp, 100);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.contains("to='user2@example.test/r&apos;1'"), "{s}");
        let body = s
            .split("<body>")
            .nth(1)
            .unwrap()
            .split("</body>")
            .next()
            .unwrap();
        assert_eq!(body.len(), 100);
        assert_eq!(parse_stamp(body), Some(stamp));

        let mut f = Framer::new(Limits::default());
        f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        // The server adds a from and may reorder attributes; only the body matters.
        f.feed(&out);
        assert!(matches!(f.next_event(), Ok(Some(Event::StreamStart(_)))));
        let Ok(Some(Event::Stanza(e))) = f.next_event() else {
            panic!()
        };
        assert_eq!(message_stamp(&e), Some(stamp));

        // No padding requested: just the stamp.
        let mut out = Vec::new();
        write_message(&mut out, "a@b", stamp, 0);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("<body>rl1 deadbeef 42 123456789012</body>")
        );
    }

    #[test]
    fn foreign_bodies_are_not_stamps() {
        assert_eq!(parse_stamp("hello"), None);
        assert_eq!(parse_stamp("rl1 zz 1 2"), None);
        assert_eq!(parse_stamp("rl1 01 1"), None);
        assert_eq!(parse_stamp("rl2 01 1 2"), None);
        assert_eq!(parse_stamp("rl1 01 -1 2"), None);
        let presence = Element::new("presence", ns::CLIENT);
        assert_eq!(message_stamp(&presence), None);
        let no_body = Element::new("message", ns::CLIENT);
        assert_eq!(message_stamp(&no_body), None);
    }

    #[test]
    fn requests_serialize() {
        assert_eq!(
            String::from_utf8(stanza_bytes(&bind_request("b1", "load-1"))).unwrap(),
            "<iq type=\"set\" id=\"b1\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"><resource>load-1</resource></bind></iq>"
        );
        let r = String::from_utf8(stanza_bytes(&register_request("r", "u1", "pw"))).unwrap();
        assert!(r.contains("<query xmlns=\"jabber:iq:register\"><username>u1</username><password>pw</password></query>"));
        assert!(client_stream_header("example.test").contains("to='example.test'"));
        let err = Element::new("error", ns::STREAM)
            .with_child(Element::new("text", ns::STREAMS).with_text("x"))
            .with_child(Element::new("policy-violation", ns::STREAMS));
        assert_eq!(stream_error_condition(&err), "policy-violation");
    }
}
