//! A small, owned XML element tree with resolved namespaces, and its serializer.
//!
//! Every element carries its namespace URI explicitly (`ns`), so a tree means the same thing
//! wherever it is written. Serialization emits an `xmlns` attribute only where an element's
//! namespace differs from its parent's, which keeps stanzas on the wire as compact as clients
//! write them.

use std::fmt;

/// A child of an [`Element`]: another element or a run of character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An XML element: local name, namespace URI, attributes (unprefixed, or `xml:lang`-style
/// prefixed names kept verbatim) and children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    /// A new empty element.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Builder-style: set an attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder-style: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder-style: append text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// True if this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Set (or replace) an attribute.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Remove an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let idx = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(idx).1)
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Mutable child elements, in order.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// Mutable access to the first child element with this name and namespace.
    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.is(name, ns))
    }

    /// The first child element in this namespace, whatever its name.
    pub fn child_ns(&self, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.ns == ns)
    }

    /// Remove every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children.retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// Concatenated direct text content.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Serialize, assuming the enclosing context's default namespace is `parent_ns`
    /// (for a stanza inside a `jabber:client` stream, pass `"jabber:client"`).
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        // Inside a stream, stream-namespace elements use the `stream:` prefix the header
        // declared (`<stream:features>`, `<stream:error>`), as every client expects.
        let stream_prefixed = self.ns == crate::NS_STREAM && !parent_ns.is_empty();
        out.push(b'<');
        if stream_prefixed {
            out.extend_from_slice(b"stream:");
        }
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns && !stream_prefixed {
            out.extend_from_slice(b" xmlns=\"");
            escape_attr(&self.ns, out);
            out.push(b'"');
        }
        for (k, v) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_attr(v, out);
            out.push(b'"');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.extend_from_slice(b"</");
        if stream_prefixed {
            out.extend_from_slice(b"stream:");
        }
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }

    /// Serialize to a new buffer (see [`Element::write_to`]).
    pub fn to_bytes(&self, parent_ns: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out, parent_ns);
        out
    }

    /// Serialize as a standalone document fragment (always with its `xmlns`).
    pub fn to_xml_string(&self) -> String {
        // write_to only emits valid UTF-8 (names and escaped strings are UTF-8).
        String::from_utf8(self.to_bytes("")).unwrap_or_default()
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml_string())
    }
}

/// Escape character data.
pub fn escape_text(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

/// Escape an attribute value (double-quoted).
pub fn escape_attr(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(rep);
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_minimal_xmlns() {
        let e = Element::new("message", "jabber:client")
            .with_attr("to", "a@b")
            .with_child(Element::new("body", "jabber:client").with_text("1 < 2 & \"x\""))
            .with_child(Element::new("ping", "urn:xmpp:ping"));
        let s = String::from_utf8(e.to_bytes("jabber:client")).unwrap();
        assert_eq!(
            s,
            "<message to=\"a@b\"><body>1 &lt; 2 &amp; \"x\"</body><ping xmlns=\"urn:xmpp:ping\"/></message>"
        );
    }

    #[test]
    fn attr_escaping() {
        let e = Element::new("x", "y").with_attr("a", "<'\"&\n>");
        assert_eq!(e.to_xml_string(), "<x xmlns=\"y\" a=\"&lt;&apos;&quot;&amp;&#10;&gt;\"/>");
    }

    #[test]
    fn accessors() {
        let mut e = Element::new("iq", "jabber:client").with_attr("type", "get");
        e.set_attr("type", "set");
        assert_eq!(e.attr("type"), Some("set"));
        assert_eq!(e.remove_attr("type").as_deref(), Some("set"));
        assert!(e.attr("type").is_none());
    }
}
