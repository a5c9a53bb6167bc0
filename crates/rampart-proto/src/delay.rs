//! XEP-0203: delayed delivery (`<delay xmlns='urn:xmpp:delay' from=.. stamp=..>`).

use chrono::{DateTime, Utc};

use crate::util::{self, check, req_attr};
use crate::{Element, Jid, ParseError, datetime, ns};

/// When (and by whom) a stanza was originally sent or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    pub from: Option<Jid>,
    pub stamp: DateTime<Utc>,
    pub text: Option<String>,
}

impl Delay {
    /// A delay stamped `stamp`, added by `from`.
    pub fn new(from: Option<Jid>, stamp: DateTime<Utc>) -> Self {
        Delay {
            from,
            stamp,
            text: None,
        }
    }
}

impl TryFrom<&Element> for Delay {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "delay", ns::DELAY)?;
        let stamp = datetime::parse(req_attr(e, "stamp")?)?;
        let text = util::text_only(e)?;
        Ok(Delay {
            from: util::opt_jid(e, "from")?,
            stamp,
            text: (!text.is_empty()).then_some(text),
        })
    }
}

impl TryFrom<Element> for Delay {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        Delay::try_from(&e)
    }
}

impl From<Delay> for Element {
    fn from(d: Delay) -> Element {
        let mut e = Element::new("delay", ns::DELAY);
        if let Some(f) = d.from {
            e.set_attr("from", f.as_str());
        }
        e.set_attr("stamp", datetime::format(&d.stamp));
        match d.text {
            Some(t) if !t.is_empty() => e.with_text(t),
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn stamp() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2002, 9, 10, 23, 8, 25).unwrap()
    }

    #[test]
    fn round_trip() {
        let d = Delay {
            from: Some(Jid::parse("capulet.com").unwrap()),
            stamp: stamp(),
            text: Some("Offline".into()),
        };
        let el: Element = d.clone().into();
        assert_eq!(el.attr("stamp"), Some("2002-09-10T23:08:25.000Z"));
        assert_eq!(Delay::try_from(&el).unwrap(), d);
        let bare = Delay::new(None, stamp());
        assert_eq!(Delay::try_from(Element::from(bare.clone())).unwrap(), bare);
        let parsed = Delay::try_from(
            &Element::new("delay", ns::DELAY)
                .with_attr("stamp", "2002-09-10T23:08:25Z")
                .with_attr("from", "Capulet.com"),
        )
        .unwrap();
        assert_eq!(parsed.from.unwrap().as_str(), "capulet.com");
    }

    #[test]
    fn invalid() {
        let no_stamp = Element::new("delay", ns::DELAY);
        assert_eq!(
            Delay::try_from(&no_stamp),
            Err(ParseError::MissingAttr("stamp"))
        );
        let bad_stamp = Element::new("delay", ns::DELAY).with_attr("stamp", "2002-09-10");
        assert!(matches!(
            Delay::try_from(&bad_stamp),
            Err(ParseError::DateTime(_))
        ));
        let bad_from = Element::new("delay", ns::DELAY)
            .with_attr("stamp", "2002-09-10T23:08:25Z")
            .with_attr("from", "@x");
        assert!(matches!(
            Delay::try_from(&bad_from),
            Err(ParseError::Jid(_))
        ));
        let wrong = Element::new("x", "jabber:x:delay").with_attr("stamp", "2002-09-10T23:08:25Z");
        assert!(matches!(
            Delay::try_from(&wrong),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
