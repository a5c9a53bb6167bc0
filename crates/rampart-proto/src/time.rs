//! XEP-0202: entity time (`<time xmlns='urn:xmpp:time'><tzo/><utc/></time>`).

use chrono::{DateTime, Utc};

use crate::util::{self, check};
use crate::{Element, ParseError, datetime, ns};

/// An entity's current time and time zone offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTime {
    /// Offset from UTC, `±hh:mm` (or `Z`).
    pub tzo: String,
    pub utc: DateTime<Utc>,
}

/// The current time, with offset `+00:00` (the server does not disclose its local zone).
pub fn now() -> EntityTime {
    EntityTime {
        tzo: "+00:00".to_owned(),
        utc: Utc::now(),
    }
}

/// True if `e` is an (empty) entity-time request payload.
pub fn is_time_query(e: &Element) -> bool {
    e.is("time", ns::TIME) && e.elements().next().is_none()
}

fn valid_tzo(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let b = s.as_bytes();
    b.len() == 6
        && matches!(b[0], b'+' | b'-')
        && b[3] == b':'
        && [b[1], b[2], b[4], b[5]].iter().all(u8::is_ascii_digit)
        && (b[1] - b'0') * 10 + (b[2] - b'0') <= 23
        && (b[4] - b'0') * 10 + (b[5] - b'0') <= 59
}

impl TryFrom<&Element> for EntityTime {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "time", ns::TIME)?;
        let mut tzo = None;
        let mut utc = None;
        for c in e.elements() {
            if c.is("tzo", ns::TIME) {
                let t = util::text_only(c)?;
                let t = t.trim();
                if !valid_tzo(t) {
                    return Err(ParseError::bad_value("tzo", t));
                }
                util::once(&mut tzo, t.to_owned(), "tzo")?;
            } else if c.is("utc", ns::TIME) {
                util::once(
                    &mut utc,
                    datetime::parse(util::text_only(c)?.trim())?,
                    "utc",
                )?;
            } else {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(EntityTime {
            tzo: tzo.ok_or(ParseError::MissingChild("tzo"))?,
            utc: utc.ok_or(ParseError::MissingChild("utc"))?,
        })
    }
}

impl TryFrom<Element> for EntityTime {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        EntityTime::try_from(&e)
    }
}

impl From<EntityTime> for Element {
    fn from(t: EntityTime) -> Element {
        Element::new("time", ns::TIME)
            .with_child(Element::new("tzo", ns::TIME).with_text(t.tzo))
            .with_child(Element::new("utc", ns::TIME).with_text(datetime::format(&t.utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trip() {
        let t = EntityTime {
            tzo: "-06:00".into(),
            utc: Utc.with_ymd_and_hms(2006, 12, 19, 17, 58, 35).unwrap(),
        };
        let el: Element = t.clone().into();
        assert_eq!(
            el.to_xml_string(),
            "<time xmlns=\"urn:xmpp:time\"><tzo>-06:00</tzo><utc>2006-12-19T17:58:35.000Z</utc></time>"
        );
        assert_eq!(EntityTime::try_from(&el).unwrap(), t);
        let n = now();
        assert_eq!(n.tzo, "+00:00");
        let back = EntityTime::try_from(Element::from(n.clone())).unwrap();
        assert_eq!(back.utc.timestamp_millis(), n.utc.timestamp_millis());
        assert!(is_time_query(&Element::new("time", ns::TIME)));
        assert!(!is_time_query(&el));
    }

    #[test]
    fn invalid() {
        let mk = |tzo: &str, utc: &str| {
            Element::new("time", ns::TIME)
                .with_child(Element::new("tzo", ns::TIME).with_text(tzo))
                .with_child(Element::new("utc", ns::TIME).with_text(utc))
        };
        assert!(EntityTime::try_from(&mk("Z", "2006-12-19T17:58:35Z")).is_ok());
        for tzo in ["", "6", "+6:00", "+24:00", "+05:60", "05:00", "+05-00"] {
            assert!(matches!(
                EntityTime::try_from(&mk(tzo, "2006-12-19T17:58:35Z")),
                Err(ParseError::BadValue { .. })
            ));
        }
        assert!(matches!(
            EntityTime::try_from(&mk("Z", "noon")),
            Err(ParseError::DateTime(_))
        ));
        let missing =
            Element::new("time", ns::TIME).with_child(Element::new("tzo", ns::TIME).with_text("Z"));
        assert_eq!(
            EntityTime::try_from(&missing),
            Err(ParseError::MissingChild("utc"))
        );
        assert!(matches!(
            EntityTime::try_from(&Element::new("time", ns::PING)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
