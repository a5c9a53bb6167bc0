//! XEP-0054: vcard-temp.
//!
//! The vCard is kept as the element the client sent (`<vCard xmlns='vcard-temp'>…</vCard>`):
//! servers store and return it verbatim, so [`VCard`] only checks the root and offers
//! accessors for the few fields the server itself may show.

use crate::util::check;
use crate::{Element, ParseError, ns};

/// A `<vCard xmlns='vcard-temp'/>` element (the IQ payload of a get, set or result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VCard(Element);

impl VCard {
    /// An empty `<vCard/>` (a get request, or "no vCard" in a result).
    pub fn empty() -> VCard {
        VCard(Element::new("vCard", ns::VCARD))
    }

    /// True if the vCard has no child elements (XEP-0054: an empty vCard means none).
    pub fn is_empty(&self) -> bool {
        self.0.elements().next().is_none()
    }

    /// The formatted name, `<FN/>`.
    pub fn formatted_name(&self) -> Option<String> {
        self.field("FN")
    }

    /// The nickname, `<NICKNAME/>`.
    pub fn nickname(&self) -> Option<String> {
        self.field("NICKNAME")
    }

    /// The whole element.
    pub fn as_element(&self) -> &Element {
        &self.0
    }

    fn field(&self, name: &str) -> Option<String> {
        self.0.child(name, ns::VCARD).map(Element::text).filter(|t| !t.is_empty())
    }
}

impl TryFrom<&Element> for VCard {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "vCard", ns::VCARD)?;
        Ok(VCard(e.clone()))
    }
}

impl TryFrom<Element> for VCard {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        check(&e, "vCard", ns::VCARD)?;
        Ok(VCard(e))
    }
}

impl From<VCard> for Element {
    fn from(v: VCard) -> Element {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Element {
        Element::new("vCard", ns::VCARD)
            .with_child(Element::new("FN", ns::VCARD).with_text("Peter Saint-Andre"))
            .with_child(Element::new("NICKNAME", ns::VCARD).with_text("stpeter"))
            .with_child(
                Element::new("N", ns::VCARD)
                    .with_child(Element::new("FAMILY", ns::VCARD).with_text("Saint-Andre")),
            )
    }

    #[test]
    fn round_trip() {
        let v = VCard::try_from(&card()).unwrap();
        assert!(!v.is_empty());
        assert_eq!(v.formatted_name().as_deref(), Some("Peter Saint-Andre"));
        assert_eq!(v.nickname().as_deref(), Some("stpeter"));
        assert_eq!(Element::from(v.clone()), card());
        assert_eq!(VCard::try_from(Element::from(v.clone())).unwrap(), v);
    }

    #[test]
    fn empty() {
        let v = VCard::empty();
        assert!(v.is_empty());
        assert_eq!(v.formatted_name(), None);
        assert_eq!(Element::from(v).to_xml_string(), "<vCard xmlns=\"vcard-temp\"/>");
        // Text only (whitespace) still counts as empty; an empty <FN/> is no name.
        let ws = VCard::try_from(Element::new("vCard", ns::VCARD).with_text("\n")).unwrap();
        assert!(ws.is_empty());
        let blank = VCard::try_from(Element::new("vCard", ns::VCARD).with_child(Element::new("FN", ns::VCARD))).unwrap();
        assert_eq!(blank.formatted_name(), None);
    }

    #[test]
    fn invalid() {
        for e in [
            Element::new("vcard", ns::VCARD),
            Element::new("vCard", "urn:ietf:params:xml:ns:vcard-4.0"),
            Element::new("query", ns::VCARD),
        ] {
            assert!(matches!(VCard::try_from(&e), Err(ParseError::WrongElement { .. })), "{e}");
        }
    }
}
