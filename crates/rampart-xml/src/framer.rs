//! The incremental stream framer: finds stanza boundaries in arbitrary byte chunks while
//! enforcing limits, then builds the element tree of each complete stanza.

use crate::element::Element;

/// Hard limits on what a peer may send. Every limit is checked as bytes arrive.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest top-level stanza, in bytes of its serialized form as received.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza element itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element (namespace declarations included).
    pub max_attrs: usize,
    /// Most namespace declarations (`xmlns`, `xmlns:p`) on one element.
    pub max_ns_decls: usize,
    /// Longest element or attribute name.
    pub max_name_len: usize,
    /// Largest stream header (`<stream:stream ...>`), in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attrs: 32,
            max_ns_decls: 8,
            max_name_len: 256,
            max_header_bytes: 4096,
        }
    }
}

/// The attributes of a received stream header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The default namespace declared on the stream (`jabber:client`, `jabber:server`, ...).
    pub default_ns: String,
    /// The namespace bound to the `stream` element's own prefix (must be [`crate::NS_STREAM`]).
    pub stream_ns: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Every attribute as received (prefixed names verbatim), for anything not broken out above.
    pub attrs: Vec<(String, String)>,
}

/// What the framer yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `<stream:stream ...>` was received (optionally after an XML declaration).
    StreamStart(StreamHeader),
    /// A complete top-level child of the stream, with namespaces resolved against the stream's
    /// declarations (a `<message>` in a `jabber:client` stream has `ns == "jabber:client"`,
    /// `<stream:error>` has `ns == NS_STREAM`).
    Stanza(Element),
    /// `</stream:stream>` was received.
    StreamEnd,
}

/// Why the framer refused input. Each maps to an RFC 6120 stream error condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML (mismatched tags, bad syntax, undeclared prefix, ...).
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// Input is not valid UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A forbidden XML feature: DTD, comment, processing instruction, entity reference.
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// A limit in [`Limits`] was exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The stream element itself is wrong (bad name or namespace of the root element).
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition to answer this error with.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::InvalidUtf8 => "unsupported-encoding",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::LimitExceeded(_) => "policy-violation",
            XmlError::InvalidNamespace(_) => "invalid-namespace",
        }
    }
}

/// Incremental framer for one direction of one XML stream.
///
/// Usage: [`Framer::feed`] each chunk read from the socket, then call [`Framer::next_event`]
/// until it returns `Ok(None)` (needs more bytes). After an error the framer is poisoned and
/// keeps returning that error. [`Framer::reset`] starts a new stream (after STARTTLS or SASL
/// success), discarding buffered bytes.
pub struct Framer {
    limits: Limits,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Append received bytes. Cheap: no parsing happens here beyond bookkeeping.
    pub fn feed(&mut self, _data: &[u8]) {
        todo!("framer: implement")
    }

    /// The next complete event, `Ok(None)` if more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        todo!("framer: implement")
    }

    /// Forget all state and expect a new stream header.
    pub fn reset(&mut self) {
        todo!("framer: implement")
    }

    /// Bytes received but not yet consumed by a complete event (for flood/slowloris checks).
    pub fn buffered(&self) -> usize {
        todo!("framer: implement")
    }
}
