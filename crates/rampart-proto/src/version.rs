//! XEP-0092: software version.

use crate::util::{self, check};
use crate::{Element, ParseError, ns};

/// A software version result: `<query xmlns='jabber:iq:version'><name/><version/>[<os/>]</query>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareVersion {
    pub name: String,
    pub version: String,
    pub os: Option<String>,
}

/// True if `e` is a software version request (an empty `<query/>`).
pub fn is_version_query(e: &Element) -> bool {
    e.is("query", ns::VERSION) && e.elements().next().is_none()
}

impl TryFrom<&Element> for SoftwareVersion {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::VERSION)?;
        let (mut name, mut version, mut os) = (None, None, None);
        for c in e.elements().filter(|c| c.ns == ns::VERSION) {
            match c.name.as_str() {
                "name" => util::once(&mut name, util::text_only(c)?, "name")?,
                "version" => util::once(&mut version, util::text_only(c)?, "version")?,
                "os" => util::once(&mut os, util::text_only(c)?, "os")?,
                _ => return Err(ParseError::UnexpectedChild(c.name.clone())),
            }
        }
        Ok(SoftwareVersion {
            name: name.ok_or(ParseError::MissingChild("name"))?,
            version: version.ok_or(ParseError::MissingChild("version"))?,
            os,
        })
    }
}

impl TryFrom<Element> for SoftwareVersion {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        SoftwareVersion::try_from(&e)
    }
}

impl From<SoftwareVersion> for Element {
    fn from(v: SoftwareVersion) -> Element {
        let mut e = Element::new("query", ns::VERSION)
            .with_child(util::text_el("name", ns::VERSION, v.name))
            .with_child(util::text_el("version", ns::VERSION, v.version));
        if let Some(os) = v.os {
            e = e.with_child(util::text_el("os", ns::VERSION, os));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for v in [
            SoftwareVersion {
                name: "Rampart".into(),
                version: "0.1.0".into(),
                os: None,
            },
            SoftwareVersion {
                name: "Rampart".into(),
                version: "0.1.0".into(),
                os: Some("Linux".into()),
            },
        ] {
            let el: Element = v.clone().into();
            assert!(!is_version_query(&el));
            assert_eq!(SoftwareVersion::try_from(&el).unwrap(), v);
        }
        assert!(is_version_query(&Element::new("query", ns::VERSION)));
        assert!(!is_version_query(&Element::new("query", ns::ROSTER)));
    }

    #[test]
    fn invalid() {
        let q = || Element::new("query", ns::VERSION);
        assert_eq!(
            SoftwareVersion::try_from(&q()),
            Err(ParseError::MissingChild("name"))
        );
        let no_version = q().with_child(Element::new("name", ns::VERSION).with_text("x"));
        assert_eq!(
            SoftwareVersion::try_from(&no_version),
            Err(ParseError::MissingChild("version"))
        );
        let dup = no_version
            .clone()
            .with_child(Element::new("name", ns::VERSION));
        assert_eq!(
            SoftwareVersion::try_from(&dup),
            Err(ParseError::Duplicate("name"))
        );
        let unknown = no_version.with_child(Element::new("build", ns::VERSION));
        assert!(matches!(
            SoftwareVersion::try_from(&unknown),
            Err(ParseError::UnexpectedChild(_))
        ));
        assert!(matches!(
            SoftwareVersion::try_from(&Element::new("query", ns::DISCO_INFO)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
