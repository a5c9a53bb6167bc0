//! XMPP protocol types: JIDs, namespaces, typed stanzas and payloads, stanza and stream errors.
//!
//! One module per RFC or XEP, in the style of xmpp-parsers. Each typed payload converts from an
//! [`rampart_xml::Element`] (`TryFrom`, refusing invalid input with [`ParseError`]) and back
//! (`From<T> for Element`), and has round-trip and invalid-input tests.
//!
//! This crate does no I/O and knows nothing of tokio, storage or configuration. The server's
//! hot path routes on raw elements and a few attributes; typed parsing happens only where a
//! feature needs it.

pub use rampart_xml::{Element, Node};

pub mod bind;
pub mod blocking;
pub mod caps;
pub mod dataforms;
pub mod datetime;
pub mod delay;
pub mod disco;
pub mod error;
pub mod jid;
pub mod last;
pub mod ns;
pub mod ping;
pub mod private;
pub mod pubsub;
pub mod push;
pub mod roster;
pub mod sasl;
pub mod stanza;
pub mod stream;
pub mod time;
pub mod tls;
pub mod vcard;
pub mod version;

mod util;

pub use error::{
    DefinedCondition, ErrorType, StanzaError, StreamError, StreamErrorCondition, error_reply,
};
pub use jid::{Jid, JidError};
pub use stanza::{Iq, IqType, Message, MessageType, Presence, PresenceType, Show, StanzaKind};

/// Why an element could not be turned into a typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The element has the wrong name or namespace for this type.
    #[error("wrong element: expected <{expected}/>, found <{found}/>")]
    WrongElement {
        /// The expected local name.
        expected: &'static str,
        /// The element found, as `{namespace}name`.
        found: String,
    },
    /// A required attribute is missing.
    #[error("missing attribute '{0}'")]
    MissingAttr(&'static str),
    /// A required child element is missing.
    #[error("missing child element <{0}/>")]
    MissingChild(&'static str),
    /// An attribute or child has a value outside its allowed set.
    #[error("bad value for '{name}': {value:?}")]
    BadValue {
        /// Attribute or element name.
        name: &'static str,
        /// The offending value (possibly truncated).
        value: String,
    },
    /// An element that may appear at most once appears more than once.
    #[error("duplicate <{0}/>")]
    Duplicate(&'static str),
    /// A child element that is not allowed here.
    #[error("unexpected child element <{0}/>")]
    UnexpectedChild(String),
    /// Wrong number of child elements (e.g. an IQ get/set without exactly one payload).
    #[error("{0}")]
    ChildCount(&'static str),
    /// An address attribute or element does not hold a valid JID.
    #[error("invalid JID: {0}")]
    Jid(#[from] JidError),
    /// Character data that should be base64 is not.
    #[error("invalid base64")]
    Base64,
    /// A date/time value that is not XEP-0082 conformant.
    #[error("invalid date/time {0:?}")]
    DateTime(String),
}

impl ParseError {
    /// A [`ParseError::BadValue`], truncating long values so errors stay small.
    pub fn bad_value(name: &'static str, value: &str) -> Self {
        let mut end = value.len().min(64);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        ParseError::BadValue {
            name,
            value: value[..end].to_owned(),
        }
    }
}
