//! XEP-0199: XMPP ping.

use crate::util::check;
use crate::{Element, ParseError, ns};

/// The `<ping xmlns='urn:xmpp:ping'/>` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ping;

/// A `<ping/>` payload.
pub fn ping() -> Element {
    Element::new("ping", ns::PING)
}

/// True if `e` is a `<ping/>` payload.
pub fn is_ping(e: &Element) -> bool {
    e.is("ping", ns::PING)
}

impl TryFrom<&Element> for Ping {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "ping", ns::PING)?;
        Ok(Ping)
    }
}

impl TryFrom<Element> for Ping {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        Ping::try_from(&e)
    }
}

impl From<Ping> for Element {
    fn from(_: Ping) -> Element {
        ping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let el: Element = Ping.into();
        assert_eq!(el.to_xml_string(), "<ping xmlns=\"urn:xmpp:ping\"/>");
        assert!(is_ping(&el));
        assert_eq!(Ping::try_from(el).unwrap(), Ping);
    }

    #[test]
    fn invalid() {
        assert!(!is_ping(&Element::new("ping", ns::TIME)));
        assert!(matches!(
            Ping::try_from(&Element::new("pong", ns::PING)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
