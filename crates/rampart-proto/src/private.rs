//! XEP-0049: Private XML Storage (`jabber:iq:private`).
//!
//! A `<query xmlns='jabber:iq:private'/>` carries the stored fragments: one child in a get
//! (naming what to fetch: its name and namespace), one or more in a set or a result. Each
//! fragment's root must be in its own namespace; [`is_reserved_namespace`] names the ones a
//! server refuses.

use crate::util::check;
use crate::{Element, ParseError, ns};

/// A private storage query: the fragments inside `<query xmlns='jabber:iq:private'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivateQuery {
    /// The stored (or requested) fragments, in document order.
    pub items: Vec<Element>,
}

/// Namespaces a fragment's root may not be in: the stanza namespaces and private storage
/// itself (XEP-0049 §2.3: reserved namespaces are refused with `not-acceptable`).
pub fn is_reserved_namespace(namespace: &str) -> bool {
    namespace.is_empty() || matches!(namespace, ns::CLIENT | ns::SERVER | ns::PRIVATE)
}

impl TryFrom<&Element> for PrivateQuery {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::PRIVATE)?;
        Ok(PrivateQuery { items: e.elements().cloned().collect() })
    }
}

impl TryFrom<Element> for PrivateQuery {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        PrivateQuery::try_from(&e)
    }
}

impl From<PrivateQuery> for Element {
    fn from(q: PrivateQuery) -> Element {
        q.items.into_iter().fold(Element::new("query", ns::PRIVATE), Element::with_child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs() -> Element {
        Element::new("exodus", "exodus:prefs")
            .with_child(Element::new("defaultnick", "exodus:prefs").with_text("Hamlet"))
    }

    #[test]
    fn round_trip() {
        for q in [
            PrivateQuery::default(),
            PrivateQuery { items: vec![prefs()] },
            PrivateQuery { items: vec![prefs(), Element::new("storage", "storage:bookmarks")] },
        ] {
            let el: Element = q.clone().into();
            assert!(el.is("query", ns::PRIVATE));
            assert_eq!(PrivateQuery::try_from(&el).unwrap(), q);
        }
        let el: Element = PrivateQuery { items: vec![prefs()] }.into();
        assert_eq!(
            el.to_xml_string(),
            "<query xmlns=\"jabber:iq:private\"><exodus xmlns=\"exodus:prefs\">\
             <defaultnick>Hamlet</defaultnick></exodus></query>"
        );
    }

    #[test]
    fn text_between_children_is_ignored() {
        let el = Element::new("query", ns::PRIVATE).with_text("  ").with_child(prefs());
        assert_eq!(PrivateQuery::try_from(el).unwrap().items, vec![prefs()]);
    }

    #[test]
    fn invalid() {
        assert!(matches!(
            PrivateQuery::try_from(&Element::new("query", ns::ROSTER)),
            Err(ParseError::WrongElement { .. })
        ));
        assert!(matches!(
            PrivateQuery::try_from(&Element::new("storage", ns::PRIVATE)),
            Err(ParseError::WrongElement { .. })
        ));
    }

    #[test]
    fn reserved_namespaces() {
        for n in [ns::CLIENT, ns::SERVER, ns::PRIVATE, ""] {
            assert!(is_reserved_namespace(n), "{n}");
        }
        for n in ["storage:bookmarks", "exodus:prefs", ns::VCARD, "jabber:iq:privatex"] {
            assert!(!is_reserved_namespace(n), "{n}");
        }
    }
}
