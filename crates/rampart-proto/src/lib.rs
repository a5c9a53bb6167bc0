//! XMPP protocol types: JIDs, namespaces, typed stanzas and payloads, stanza and stream errors.
//!
//! One module per RFC or XEP, in the style of xmpp-parsers. Each typed payload converts from an
//! [`rampart_xml::Element`] (`TryFrom`, refusing invalid input with [`ParseError`]) and back
//! (`From<T> for Element`), and has round-trip and invalid-input tests.
//!
//! This crate does no I/O and knows nothing of tokio, storage or configuration. The server's
//! hot path routes on raw elements and a few attributes; typed parsing happens only where a
//! feature needs it.
