//! XEP-0012: Last Activity (`jabber:iq:last`).
//!
//! A request is an empty `<query/>`; an answer carries `seconds` (uptime for a server,
//! time since logout for an account, idle time for a client) and, for an account, the
//! status text of its last unavailable presence as character data.

use crate::util::{check, no_children};
use crate::{Element, ParseError, ns};

/// A last-activity query or answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastActivity {
    /// Seconds (absent in a request).
    pub seconds: Option<u64>,
    /// Status text (absent when empty).
    pub status: Option<String>,
}

impl LastActivity {
    /// An answer with `seconds` and optional status text.
    pub fn answer(seconds: u64, status: Option<String>) -> Self {
        LastActivity { seconds: Some(seconds), status: status.filter(|s| !s.is_empty()) }
    }

    /// True if this is a request (no `seconds`, no text).
    pub fn is_request(&self) -> bool {
        self.seconds.is_none() && self.status.is_none()
    }
}

impl TryFrom<&Element> for LastActivity {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::LAST)?;
        no_children(e)?;
        let seconds = match e.attr("seconds") {
            None => None,
            Some(s) => Some(
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| ParseError::bad_value("seconds", s))?,
            ),
        };
        let text = e.text();
        Ok(LastActivity { seconds, status: (!text.is_empty()).then_some(text) })
    }
}

impl TryFrom<Element> for LastActivity {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        LastActivity::try_from(&e)
    }
}

impl From<LastActivity> for Element {
    fn from(l: LastActivity) -> Element {
        let mut e = Element::new("query", ns::LAST);
        if let Some(s) = l.seconds {
            e.set_attr("seconds", s.to_string());
        }
        match l.status {
            Some(t) if !t.is_empty() => e.with_text(t),
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for l in [
            LastActivity::default(),
            LastActivity::answer(0, None),
            LastActivity::answer(903, Some("Heading Home".into())),
            LastActivity::answer(u64::MAX, None),
        ] {
            let el: Element = l.clone().into();
            assert_eq!(LastActivity::try_from(&el).unwrap(), l);
        }
        assert!(LastActivity::default().is_request());
        assert!(!LastActivity::answer(1, None).is_request());
        assert_eq!(LastActivity::answer(1, Some(String::new())).status, None);
        let el: Element = LastActivity::answer(903, Some("Heading Home".into())).into();
        assert_eq!(el.to_xml_string(), "<query xmlns=\"jabber:iq:last\" seconds=\"903\">Heading Home</query>");
    }

    #[test]
    fn invalid() {
        let q = || Element::new("query", ns::LAST);
        for bad in ["", "-1", "1.5", "abc", "18446744073709551616"] {
            assert!(
                matches!(LastActivity::try_from(q().with_attr("seconds", bad)), Err(ParseError::BadValue { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            LastActivity::try_from(q().with_child(Element::new("x", ns::LAST))),
            Err(ParseError::UnexpectedChild(_))
        ));
        assert!(matches!(
            LastActivity::try_from(Element::new("query", ns::VERSION)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
