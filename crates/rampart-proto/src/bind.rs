//! RFC 6120 §7: resource binding (and the RFC 3921 session feature for old clients).

use crate::util::{self, check};
use crate::{Element, ParseError, ns};

/// A client's `<bind/>` request: with or without a resource it would like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindRequest {
    pub resource: Option<String>,
}

impl TryFrom<&Element> for BindRequest {
    type Error = ParseError;
    /// Parses the `<bind/>` child of the IQ set. An empty `<resource/>` counts as none.
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "bind", ns::BIND)?;
        let mut resource = None;
        for c in e.elements() {
            if c.is("resource", ns::BIND) {
                util::once(&mut resource, util::text_only(c)?, "resource")?;
            } else {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(BindRequest {
            resource: resource.filter(|r| !r.is_empty()),
        })
    }
}

impl TryFrom<Element> for BindRequest {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        BindRequest::try_from(&e)
    }
}

impl From<BindRequest> for Element {
    fn from(b: BindRequest) -> Element {
        let e = Element::new("bind", ns::BIND);
        match b.resource {
            Some(r) => e.with_child(Element::new("resource", ns::BIND).with_text(r)),
            None => e,
        }
    }
}

/// `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>…</jid></bind>`: the bound full JID.
pub fn bind_result(jid: &str) -> Element {
    Element::new("bind", ns::BIND).with_child(Element::new("jid", ns::BIND).with_text(jid))
}

/// Parse a bind result back to the JID it carries.
pub fn parse_bind_result(e: &Element) -> Result<crate::Jid, ParseError> {
    check(e, "bind", ns::BIND)?;
    let j = e
        .child("jid", ns::BIND)
        .ok_or(ParseError::MissingChild("jid"))?;
    Ok(crate::Jid::parse(&util::text_only(j)?)?)
}

/// The `<bind/>` stream feature.
pub fn bind_feature() -> Element {
    Element::new("bind", ns::BIND)
}

/// The `<session><optional/></session>` stream feature (RFC 3921 compatibility).
pub fn session_feature() -> Element {
    Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION))
}

/// True if `e` is an RFC 3921 `<session/>` establishment request (answer with an empty result).
pub fn is_session_request(e: &Element) -> bool {
    e.is("session", ns::SESSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for b in [
            BindRequest { resource: None },
            BindRequest {
                resource: Some("Phone 1".into()),
            },
        ] {
            let el: Element = b.clone().into();
            assert_eq!(BindRequest::try_from(&el).unwrap(), b);
            assert_eq!(BindRequest::try_from(el).unwrap(), b);
        }
        let empty = Element::new("bind", ns::BIND).with_child(Element::new("resource", ns::BIND));
        assert_eq!(
            BindRequest::try_from(&empty).unwrap(),
            BindRequest { resource: None }
        );
    }

    #[test]
    fn invalid() {
        assert!(matches!(
            BindRequest::try_from(&Element::new("bind", ns::SESSION)),
            Err(ParseError::WrongElement { .. })
        ));
        let two = Element::new("bind", ns::BIND)
            .with_child(Element::new("resource", ns::BIND).with_text("a"))
            .with_child(Element::new("resource", ns::BIND).with_text("b"));
        assert_eq!(
            BindRequest::try_from(&two),
            Err(ParseError::Duplicate("resource"))
        );
        let other = Element::new("bind", ns::BIND).with_child(Element::new("jid", ns::BIND));
        assert!(matches!(
            BindRequest::try_from(&other),
            Err(ParseError::UnexpectedChild(_))
        ));
        let nested = Element::new("bind", ns::BIND)
            .with_child(Element::new("resource", ns::BIND).with_child(Element::new("x", "y")));
        assert!(matches!(
            BindRequest::try_from(&nested),
            Err(ParseError::UnexpectedChild(_))
        ));
    }

    #[test]
    fn result_and_features() {
        let r = bind_result("u@d/r");
        assert_eq!(
            r.to_xml_string(),
            "<bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"><jid>u@d/r</jid></bind>"
        );
        assert_eq!(parse_bind_result(&r).unwrap().as_str(), "u@d/r");
        assert!(parse_bind_result(&bind_result("@d")).is_err());
        assert!(parse_bind_result(&bind_feature()).is_err());
        assert_eq!(
            session_feature().to_xml_string(),
            "<session xmlns=\"urn:ietf:params:xml:ns:xmpp-session\"><optional/></session>"
        );
        assert!(is_session_request(&Element::new("session", ns::SESSION)));
    }
}
