//! Border rules that look at stanzas: end-to-end encrypted payloads, namespace rewriting
//! between `jabber:server` and `jabber:client`, and the addressing checks for stanzas
//! arriving from an authenticated peer.

use rampart_proto::{Element, Jid, ns};
use rampart_xml::Node;

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
