//! Border rules that look at stanzas: what kind of traffic a stanza is (for the per-domain
//! rules), end-to-end encrypted payloads, namespace rewriting between `jabber:server` and
//! `jabber:client`, the addressing checks for stanzas arriving from an authenticated peer,
//! and the server-level IQs a remote server may ask this domain.

use rampart_proto::{Element, Jid, ns};
use rampart_xml::Node;

use super::config::{Direction, Kind};

/// Namespaces of group chat payloads (XEP-0045, XEP-0249 direct invitations).
fn is_room_payload(c: &Element) -> bool {
    c.ns.starts_with("http://jabber.org/protocol/muc") || c.ns == "jabber:x:conference"
}

/// Does a message carry a file link: an XEP-0066 out-of-band URL (what upload clients
/// attach to the link they send), a SIMS media share (XEP-0385, inside an XEP-0372
/// reference) or a stateless file share (XEP-0447)?
pub fn carries_file(el: &Element) -> bool {
    el.elements().any(|c| {
        c.ns == "jabber:x:oob"
            || c.ns == "urn:xmpp:sfs:0"
            || c.ns == "urn:xmpp:sims:1"
            || (c.ns == "urn:xmpp:reference:0" && c.elements().any(|m| m.ns == "urn:xmpp:sims:1"))
    })
}

/// What kind of traffic `el` is for the border rules, or `None` for what is never judged
/// by kind: errors, and answers to IQ requests (they answer something that crossed the
/// other way). `local_is_service` says the local party is one of our services (a room on
/// our group chat service): its traffic is room traffic. `remote` is the remote party.
pub fn classify(el: &Element, dir: Direction, remote: &Jid, local_is_service: bool) -> Option<Kind> {
    let ty = el.attr("type");
    if ty == Some("error") {
        return None;
    }
    let room = local_is_service || el.elements().any(is_room_payload);
    match el.name.as_str() {
        "iq" if matches!(ty, Some("get" | "set")) => Some(if room { Kind::Rooms } else { Kind::Iqs }),
        "iq" => None,
        "message" if room || ty == Some("groupchat") => Some(Kind::Rooms),
        "message" if carries_file(el) => Some(Kind::Files),
        "message" => Some(Kind::Messages),
        "presence" if room => Some(Kind::Rooms),
        // Contacts' presence goes to bare JIDs (the peer fans it out); presence directed
        // from here to a remote full JID is an occupant's presence in a room (changing
        // status, leaving), which carries no group chat payload.
        "presence"
            if dir == Direction::Outbound
                && remote.is_full()
                && !matches!(ty, Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")) =>
        {
            Some(Kind::Rooms)
        }
        "presence" => Some(Kind::Presence),
        _ => None,
    }
}

/// IQ namespaces a remote server (or its users) may ask this server itself (`to` = our
/// domain): harmless, server-level, and answered without a session.
pub const SERVER_IQS: &[&str] = &[ns::PING, ns::DISCO_INFO, ns::VERSION];

/// Payload namespaces of end-to-end encryption the guard cannot inspect.
const E2EE: &[(&str, &str)] = &[
    ("eu.siacs.conversations.axolotl", "OMEMO"),
    ("urn:xmpp:omemo:2", "OMEMO"),
    ("jabber:x:encrypted", "OpenPGP (XEP-0027)"),
    ("urn:xmpp:openpgp:0", "OpenPGP (XEP-0373)"),
];

/// The kind of end-to-end encryption `el` carries, if any (top-level payloads only, where
/// every one of these specifications puts it).
pub fn e2ee_payload(el: &Element) -> Option<&'static str> {
    el.elements().find_map(|c| E2EE.iter().find(|(n, _)| c.ns == *n).map(|(_, name)| *name))
}

/// The error text for a refused encrypted payload.
pub fn e2ee_refusal(kind: &str) -> String {
    format!(
        "{kind}-encrypted messages may not cross the federation border: the server must be able \
         to scan and archive what leaves or enters the company (send it unencrypted, or ask the \
         administrator)"
    )
}

/// Rewrite a stanza received in a `jabber:server` stream into the `jabber:client` form the
/// router works on (the stanza and every descendant in `jabber:server`).
pub fn server_to_client(el: &mut Element) {
    if el.ns == ns::SERVER {
        el.ns = ns::CLIENT.to_owned();
    }
    for n in &mut el.children {
        if let Node::Element(c) = n {
            server_to_client(c);
        }
    }
}

/// Why an inbound stanza's addressing is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AddressError {
    /// `from` is missing, malformed or outside the authenticated domain.
    InvalidFrom,
    /// `to` is missing, malformed or not a domain served here.
    HostUnknown,
}

/// Check an inbound stanza's `from` (its domain must be one the peer authenticated for:
/// `peer_ok` decides) and `to` (must be served here: `is_ours` decides); returns both JIDs.
pub fn check_addresses(el: &Element, peer_ok: impl Fn(&str) -> bool, is_ours: impl Fn(&str) -> bool) -> Result<(Jid, Jid), AddressError> {
    let from = el.attr("from").and_then(|f| Jid::parse(f).ok()).ok_or(AddressError::InvalidFrom)?;
    if !peer_ok(from.domain()) {
        return Err(AddressError::InvalidFrom);
    }
    let to = el.attr("to").and_then(|t| Jid::parse(t).ok()).ok_or(AddressError::HostUnknown)?;
    if !is_ours(to.domain()) {
        return Err(AddressError::HostUnknown);
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, to: &str) -> Element {
        Element::new("message", ns::SERVER)
            .with_attr("from", from)
            .with_attr("to", to)
            .with_child(Element::new("body", ns::SERVER).with_text("hi"))
    }

    #[test]
    fn detects_e2ee() {
        let plain = msg("a@b", "c@d");
        assert_eq!(e2ee_payload(&plain), None);
        for (n, kind) in E2EE {
            let m = msg("a@b", "c@d").with_child(Element::new("encrypted", *n));
            assert_eq!(e2ee_payload(&m), Some(*kind));
        }
        assert!(e2ee_refusal("OMEMO").contains("OMEMO"));
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn classifies_kinds() {
        let remote = jid("bob@b.example");
        let out = Direction::Outbound;
        assert_eq!(classify(&msg("a@a", "bob@b.example"), out, &remote, false), Some(Kind::Messages));
        let oob = msg("a@a", "b@b").with_child(Element::new("x", "jabber:x:oob").with_child(Element::new("url", "jabber:x:oob").with_text("https://h/f")));
        assert_eq!(classify(&oob, out, &remote, false), Some(Kind::Files));
        let sims = msg("a@a", "b@b").with_child(
            Element::new("reference", "urn:xmpp:reference:0").with_child(Element::new("media-sharing", "urn:xmpp:sims:1")),
        );
        assert_eq!(classify(&sims, out, &remote, false), Some(Kind::Files));
        let sfs = msg("a@a", "b@b").with_child(Element::new("file-sharing", "urn:xmpp:sfs:0"));
        assert_eq!(classify(&sfs, out, &remote, false), Some(Kind::Files));
        let gc = msg("a@a", "r@conf.b").with_attr("type", "groupchat");
        assert_eq!(classify(&gc, out, &remote, false), Some(Kind::Rooms));
        let invite = msg("r@conf.a", "b@b").with_child(Element::new("x", "http://jabber.org/protocol/muc#user"));
        assert_eq!(classify(&invite, out, &remote, false), Some(Kind::Rooms));
        // Anything a room of ours sends or receives is room traffic.
        assert_eq!(classify(&msg("r@conf.a/nick", "b@b"), out, &remote, true), Some(Kind::Rooms));
        let err = msg("a@a", "b@b").with_attr("type", "error");
        assert_eq!(classify(&err, out, &remote, false), None);
    }

    #[test]
    fn classifies_presence_and_iqs() {
        let out = Direction::Outbound;
        let pres = |ty: Option<&str>| {
            let p = Element::new("presence", ns::CLIENT);
            match ty {
                Some(t) => p.with_attr("type", t),
                None => p,
            }
        };
        let bare = jid("bob@b.example");
        let full = jid("room@conf.b.example/nick");
        assert_eq!(classify(&pres(None), out, &bare, false), Some(Kind::Presence));
        assert_eq!(classify(&pres(Some("subscribe")), out, &bare, false), Some(Kind::Presence));
        assert_eq!(classify(&pres(Some("subscribe")), out, &full, false), Some(Kind::Presence));
        let join = pres(None).with_child(Element::new("x", "http://jabber.org/protocol/muc"));
        assert_eq!(classify(&join, out, &full, false), Some(Kind::Rooms));
        // Leaving a remote room: directed unavailable presence to the occupant JID.
        assert_eq!(classify(&pres(Some("unavailable")), out, &full, false), Some(Kind::Rooms));
        // Inbound presence from a contact's resource is presence.
        assert_eq!(classify(&pres(None), Direction::Inbound, &jid("bob@b.example/pc"), false), Some(Kind::Presence));
        let iq = |ty: &str| Element::new("iq", ns::CLIENT).with_attr("type", ty).with_child(Element::new("query", ns::VERSION));
        assert_eq!(classify(&iq("get"), out, &bare, false), Some(Kind::Iqs));
        assert_eq!(classify(&iq("set"), out, &bare, true), Some(Kind::Rooms));
        assert_eq!(classify(&iq("result"), out, &bare, false), None);
        assert_eq!(classify(&iq("error"), out, &bare, false), None);
    }

    #[test]
    fn rewrites_namespace() {
        let mut m = msg("a@b", "c@d").with_child(Element::new("x", "jabber:x:oob"));
        server_to_client(&mut m);
        assert_eq!(m.ns, ns::CLIENT);
        assert!(m.child("body", ns::CLIENT).is_some());
        assert!(m.child("x", "jabber:x:oob").is_some());
    }

    #[test]
    fn addressing() {
        let ours = |d: &str| d == "a.example";
        let peer = |d: &str| d == "b.example";
        assert!(check_addresses(&msg("u@b.example/r", "v@a.example"), peer, ours).is_ok());
        assert_eq!(check_addresses(&msg("u@evil.example", "v@a.example"), peer, ours), Err(AddressError::InvalidFrom));
        assert_eq!(check_addresses(&msg("", "v@a.example"), peer, ours), Err(AddressError::InvalidFrom));
        assert_eq!(check_addresses(&msg("u@b.example", "v@c.example"), peer, ours), Err(AddressError::HostUnknown));
        let no_to = Element::new("message", ns::SERVER).with_attr("from", "u@b.example");
        assert_eq!(check_addresses(&no_to, peer, ours), Err(AddressError::HostUnknown));
    }
}
