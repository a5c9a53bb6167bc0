//! RFC 6120 §5: STARTTLS negotiation elements.

use crate::{Element, ns};

/// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`, with `<required/>` if `required`.
pub fn starttls_feature(required: bool) -> Element {
    let e = Element::new("starttls", ns::TLS);
    if required {
        e.with_child(Element::new("required", ns::TLS))
    } else {
        e
    }
}

/// True if `e` is a client's `<starttls/>` request.
pub fn is_starttls(e: &Element) -> bool {
    e.is("starttls", ns::TLS)
}

/// `<proceed/>`: the server's go-ahead for the TLS handshake.
pub fn proceed() -> Element {
    Element::new("proceed", ns::TLS)
}

/// `<failure/>` in the TLS namespace (the server then closes the stream).
pub fn failure() -> Element {
    Element::new("failure", ns::TLS)
}

/// True if a `<starttls/>` feature element says TLS is required.
pub fn is_required(feature: &Element) -> bool {
    feature.child("required", ns::TLS).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements() {
        let f = starttls_feature(true);
        assert_eq!(
            f.to_xml_string(),
            "<starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/></starttls>"
        );
        assert!(is_required(&f));
        assert!(!is_required(&starttls_feature(false)));
        assert!(is_starttls(&starttls_feature(false)));
        assert!(!is_starttls(&Element::new("starttls", ns::SASL)));
        assert!(!is_starttls(&proceed()));
        assert!(proceed().is("proceed", ns::TLS));
        assert!(failure().is("failure", ns::TLS));
    }
}
