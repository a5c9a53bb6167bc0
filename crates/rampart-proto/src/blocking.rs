//! XEP-0191: Blocking Command (`urn:xmpp:blocking`).
//!
//! Three payloads: `<blocklist/>` (the list, in a get or its result), `<block/>` (one or
//! more items to add; also the push) and `<unblock/>` (items to remove, or none for all).
//! [`blocked_error_reply`] builds the error a server returns for a stanza the user sent to
//! a JID they blocked (§3.3: `not-acceptable` plus `<blocked xmlns='urn:xmpp:blocking:errors'/>`).

use crate::error::{DefinedCondition, ErrorType, StanzaError, error_reply};
use crate::util::req_attr;
use crate::{Element, Jid, ParseError, ns};

/// One of the three blocking payloads, each with its items' JIDs in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockingCommand {
    /// `<blocklist/>`: a request (no items) or the current list.
    Blocklist(Vec<Jid>),
    /// `<block/>`: at least one JID to block.
    Block(Vec<Jid>),
    /// `<unblock/>`: JIDs to unblock; empty means every JID.
    Unblock(Vec<Jid>),
}

impl BlockingCommand {
    /// The element name of this payload.
    pub fn name(&self) -> &'static str {
        match self {
            BlockingCommand::Blocklist(_) => "blocklist",
            BlockingCommand::Block(_) => "block",
            BlockingCommand::Unblock(_) => "unblock",
        }
    }

    /// The JIDs carried.
    pub fn items(&self) -> &[Jid] {
        match self {
            BlockingCommand::Blocklist(j) | BlockingCommand::Block(j) | BlockingCommand::Unblock(j) => j,
        }
    }
}

fn items(e: &Element) -> Result<Vec<Jid>, ParseError> {
    let mut out = Vec::new();
    for c in e.elements().filter(|c| c.ns == ns::BLOCKING) {
        if c.name != "item" {
            return Err(ParseError::UnexpectedChild(c.name.clone()));
        }
        out.push(Jid::parse(req_attr(c, "jid")?)?);
    }
    Ok(out)
}

impl TryFrom<&Element> for BlockingCommand {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        if e.ns != ns::BLOCKING {
            return Err(crate::util::wrong(e, "blocklist"));
        }
        match e.name.as_str() {
            "blocklist" => Ok(BlockingCommand::Blocklist(items(e)?)),
            "block" => {
                let jids = items(e)?;
                if jids.is_empty() {
                    // §3.3: a block without items is a bad request.
                    return Err(ParseError::MissingChild("item"));
                }
                Ok(BlockingCommand::Block(jids))
            }
            "unblock" => Ok(BlockingCommand::Unblock(items(e)?)),
            _ => Err(crate::util::wrong(e, "blocklist")),
        }
    }
}

impl TryFrom<Element> for BlockingCommand {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        BlockingCommand::try_from(&e)
    }
}

impl From<BlockingCommand> for Element {
    fn from(c: BlockingCommand) -> Element {
        let e = Element::new(c.name(), ns::BLOCKING);
        let jids = match c {
            BlockingCommand::Blocklist(j) | BlockingCommand::Block(j) | BlockingCommand::Unblock(j) => j,
        };
        jids.into_iter().fold(e, |e, j| {
            e.with_child(Element::new("item", ns::BLOCKING).with_attr("jid", j.as_str()))
        })
    }
}

/// The error for a stanza sent to a blocked JID: `<not-acceptable/>` (type `cancel`) with the
/// application condition `<blocked xmlns='urn:xmpp:blocking:errors'/>`.
pub fn blocked_error() -> Element {
    let mut e: Element = StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAcceptable).into();
    e.children.push(crate::Node::Element(Element::new("blocked", ns::BLOCKING_ERRORS)));
    e
}

/// An error reply to `stanza` (sent by the user to a JID they block) carrying [`blocked_error`].
pub fn blocked_error_reply(stanza: &Element) -> Element {
    let mut reply = error_reply(stanza, &StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAcceptable));
    if let Some(err) = reply.child_mut("error", &stanza.ns) {
        err.children.push(crate::Node::Element(Element::new("blocked", ns::BLOCKING_ERRORS)));
    }
    reply
}

/// The strings a blocklist item must equal to match `jid` (XEP-0191 §3.1 via XEP-0016
/// §2.1): the full JID, the bare JID, `domain/resource` and the domain, most specific first.
/// At most four; no duplicates.
pub fn match_candidates(jid: &Jid) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    out.push(jid.as_str().to_owned());
    if jid.resource().is_some() {
        out.push(jid.bare_str().to_owned());
    }
    if let Some(res) = jid.resource()
        && jid.node().is_some()
    {
        out.push(format!("{}/{}", jid.domain(), res));
    }
    if jid.node().is_some() || jid.resource().is_some() {
        out.push(jid.domain().to_owned());
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn round_trip() {
        for c in [
            BlockingCommand::Blocklist(vec![]),
            BlockingCommand::Blocklist(vec![j("romeo@montague.net"), j("iago@shakespeare.lit")]),
            BlockingCommand::Block(vec![j("romeo@montague.net/orchard")]),
            BlockingCommand::Unblock(vec![]),
            BlockingCommand::Unblock(vec![j("montague.net")]),
        ] {
            let el: Element = c.clone().into();
            assert_eq!(el.name, c.name());
            assert_eq!(BlockingCommand::try_from(&el).unwrap(), c);
        }
        let el: Element = BlockingCommand::Block(vec![j("Romeo@Montague.net")]).into();
        assert_eq!(
            el.to_xml_string(),
            "<block xmlns=\"urn:xmpp:blocking\"><item jid=\"romeo@montague.net\"/></block>"
        );
        assert_eq!(BlockingCommand::Block(vec![j("a@b")]).items(), &[j("a@b")]);
    }

    #[test]
    fn invalid() {
        assert_eq!(
            BlockingCommand::try_from(Element::new("block", ns::BLOCKING)),
            Err(ParseError::MissingChild("item"))
        );
        let bad_jid = Element::new("block", ns::BLOCKING)
            .with_child(Element::new("item", ns::BLOCKING).with_attr("jid", "@nowhere"));
        assert!(matches!(BlockingCommand::try_from(bad_jid), Err(ParseError::Jid(_))));
        let no_jid = Element::new("unblock", ns::BLOCKING).with_child(Element::new("item", ns::BLOCKING));
        assert_eq!(BlockingCommand::try_from(no_jid), Err(ParseError::MissingAttr("jid")));
        let odd_child = Element::new("blocklist", ns::BLOCKING).with_child(Element::new("entry", ns::BLOCKING));
        assert!(matches!(BlockingCommand::try_from(odd_child), Err(ParseError::UnexpectedChild(_))));
        for e in [Element::new("blocked", ns::BLOCKING), Element::new("block", ns::PRIVATE)] {
            assert!(matches!(BlockingCommand::try_from(e), Err(ParseError::WrongElement { .. })));
        }
        // Children in other namespaces are ignored.
        let ext = Element::new("unblock", ns::BLOCKING).with_child(Element::new("x", "urn:example"));
        assert_eq!(BlockingCommand::try_from(ext).unwrap(), BlockingCommand::Unblock(vec![]));
    }

    #[test]
    fn error_reply_carries_the_blocked_condition() {
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", "juliet@capulet.lit/balcony")
            .with_attr("to", "romeo@montague.net")
            .with_attr("id", "m1");
        let r = blocked_error_reply(&msg);
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("to"), Some("juliet@capulet.lit/balcony"));
        let err = r.child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.child("not-acceptable", ns::STANZAS).is_some());
        assert!(err.child("blocked", ns::BLOCKING_ERRORS).is_some());
        assert_eq!(StanzaError::try_from(err).unwrap().condition, DefinedCondition::NotAcceptable);
        assert!(blocked_error().child("blocked", ns::BLOCKING_ERRORS).is_some());
    }

    #[test]
    fn candidates() {
        assert_eq!(
            match_candidates(&j("romeo@montague.net/orchard")),
            ["romeo@montague.net/orchard", "romeo@montague.net", "montague.net/orchard", "montague.net"]
        );
        assert_eq!(match_candidates(&j("romeo@montague.net")), ["romeo@montague.net", "montague.net"]);
        assert_eq!(match_candidates(&j("montague.net/res")), ["montague.net/res", "montague.net"]);
        assert_eq!(match_candidates(&j("montague.net")), ["montague.net"]);
    }
}
