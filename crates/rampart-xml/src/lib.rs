//! XMPP stream framing with hard limits: bytes in, stream events and element trees out.
//!
//! This crate knows nothing of sockets, tokio, storage or configuration files. It is fed
//! arbitrary chunks of bytes from a (hostile) peer and yields [`Event`]s: the stream header,
//! each complete top-level stanza as an [`Element`] tree, and the end of the stream.
//!
//! Limits ([`Limits`]) are enforced while bytes arrive, before any tree is built: a peer can
//! never make us buffer more than `max_stanza_bytes` or nest deeper than `max_depth`.
//! XML features XMPP forbids (DTDs, comments, processing instructions other than the XML
//! declaration, entity references other than the five predefined ones and character
//! references) are refused with [`XmlError::RestrictedXml`].

mod element;
mod framer;
mod scan;
mod tree;

pub use element::{Element, Node, escape_attr, escape_text};
pub use framer::{Event, Framer, Limits, StreamHeader, XmlError};
pub use tree::NS_XML;

/// Namespace of the `stream:` prefix (RFC 6120 §4.8.1).
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
