//! RFC 6120 §4: writing our stream header and the stream features element.

use crate::{Element, ns};

/// The closing tag of a stream.
pub const STREAM_CLOSE: &str = "</stream:stream>";

fn push_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    rampart_xml::escape_attr(value, out);
    out.push(b'\'');
}

/// Our stream header (RFC 6120 §4.7), with the XML declaration:
/// `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='…' id='…' from='…'
/// [to='…'] version='1.0' xml:lang='…'>`. Attribute values are escaped.
pub fn stream_header(
    default_ns: &str,
    from: &str,
    to: Option<&str>,
    id: &str,
    lang: &str,
) -> String {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream");
    push_attr(&mut out, "xmlns", default_ns);
    push_attr(&mut out, "xmlns:stream", ns::STREAM);
    push_attr(&mut out, "id", id);
    push_attr(&mut out, "from", from);
    if let Some(to) = to {
        push_attr(&mut out, "to", to);
    }
    push_attr(&mut out, "version", "1.0");
    push_attr(&mut out, "xml:lang", lang);
    out.push(b'>');
    // Only valid UTF-8 went in.
    String::from_utf8(out).unwrap_or_default()
}

/// `<stream:features>` holding `children` (RFC 6120 §4.3.2).
pub fn features(children: impl IntoIterator<Item = Element>) -> Element {
    let mut f = Element::new("features", ns::STREAM);
    for c in children {
        f = f.with_child(c);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header() {
        assert_eq!(
            stream_header(
                ns::CLIENT,
                "example.com",
                Some("u@example.com"),
                "abc",
                "en"
            ),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='example.com' \
             to='u@example.com' version='1.0' xml:lang='en'>"
        );
    }

    #[test]
    fn header_escapes_and_omits_to() {
        let h = stream_header(ns::SERVER, "a'b", None, "<&>", "e\"n");
        assert_eq!(
            h,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:stream='http://etherx.jabber.org/streams' id='&lt;&amp;&gt;' from='a&apos;b' \
             version='1.0' xml:lang='e&quot;n'>"
        );
        assert!(!h.contains(" to="));
    }

    #[test]
    fn features_element() {
        let f = features([crate::bind::bind_feature()]);
        assert!(f.is("features", ns::STREAM));
        assert!(f.child("bind", ns::BIND).is_some());
        assert_eq!(STREAM_CLOSE, "</stream:stream>");
    }
}
