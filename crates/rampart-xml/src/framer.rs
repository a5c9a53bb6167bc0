//! The incremental stream framer: finds stanza boundaries in arbitrary byte chunks while
//! enforcing limits, then builds the element tree of each complete stanza.

use crate::element::Element;
use crate::scan::{Outcome, Phase, Scanner, Tok, Unit};
use crate::tree::{self, HeaderCtx, Scratch};

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
///
/// Design: a resumable byte scanner (the private `scan` module) finds the end of each
/// top-level unit, enforcing every limit as bytes arrive and recording token offsets; when a
/// unit is complete the tree is built from those tokens without lexing the bytes again. UTF-8
/// is validated incrementally, once per byte.
pub struct Framer {
    limits: Limits,
    /// Received bytes; `buf[..pos]` is consumed and dropped lazily.
    buf: Vec<u8>,
    /// Start of unconsumed bytes (the current unit's `<` while one is in progress).
    pos: usize,
    /// Where the scanner resumes.
    scan: usize,
    /// `buf[..utf8_valid]` is valid UTF-8 (it may end before a split multi-byte char).
    utf8_valid: usize,
    /// Offset of the first invalid UTF-8 byte, if seen.
    utf8_bad: Option<usize>,
    scanner: Scanner,
    toks: Vec<Tok>,
    scratch: Scratch,
    header: HeaderCtx,
    /// An event already decided (StreamEnd after a self-closing header). Boxed: rare, and
    /// an `Event` inline is 192 bytes in every connection's framer.
    pending: Option<Box<Event>>,
    error: Option<XmlError>,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            utf8_valid: 0,
            utf8_bad: None,
            scanner: Scanner::new(),
            toks: Vec::new(),
            scratch: Scratch::default(),
            header: HeaderCtx::default(),
            pending: None,
            error: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Append received bytes. Cheap: no parsing happens here beyond bookkeeping.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete event, `Ok(None)` if more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.next_inner() {
            Ok(ev) => Ok(ev),
            Err(e) => {
                self.error = Some(e.clone());
                self.buf = Vec::new();
                self.toks = Vec::new();
                self.pos = 0;
                self.scan = 0;
                self.utf8_valid = 0;
                self.utf8_bad = None;
                Err(e)
            }
        }
    }

    /// Forget all state and expect a new stream header.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.scan = 0;
        self.utf8_valid = 0;
        self.utf8_bad = None;
        self.scanner = Scanner::new();
        self.toks.clear();
        self.header = HeaderCtx::default();
        self.pending = None;
        self.error = None;
    }

    /// Free the buffers if nothing is buffered (call before waiting for more bytes: an idle
    /// stream then holds no buffer memory). A no-op mid-stanza.
    pub fn release_idle(&mut self) {
        // Everything received was consumed: no unit is in progress, so neither the bytes nor
        // the tokens of the last unit are needed.
        if self.pos >= self.buf.len() && self.error.is_none() {
            self.compact();
            if self.buf.is_empty() {
                self.buf = Vec::new();
                self.toks = Vec::new();
                // The element-building scratch (open frames, namespace declarations) too:
                // ~640 bytes per idle connection otherwise.
                self.scratch = Scratch::default();
            }
        }
    }

    /// Room held by the buffers, in elements (tests of idle memory).
    #[cfg(test)]
    fn held_capacity(&self) -> usize {
        self.buf.capacity() + self.toks.capacity() + self.scratch.capacity()
    }

    /// Bytes received but not yet consumed by a complete event (for flood/slowloris checks).
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True once `</stream:stream>` has been received (only whitespace may follow).
    pub fn is_closed(&self) -> bool {
        self.scanner.phase == Phase::Closed
    }

    fn next_inner(&mut self) -> Result<Option<Event>, XmlError> {
        if let Some(ev) = self.pending.take() {
            return Ok(Some(*ev));
        }
        self.validate_utf8();
        loop {
            let (i, outcome) = self.scanner.scan(
                &self.buf,
                self.scan,
                self.utf8_valid,
                &mut self.toks,
                &self.limits,
            );
            self.scan = i;
            match outcome {
                Outcome::Fail(e) => return Err(e),
                Outcome::More => {
                    if self.utf8_bad.is_some() && i >= self.utf8_valid {
                        return Err(XmlError::InvalidUtf8);
                    }
                    self.pos = if self.scanner.at_top() {
                        i
                    } else {
                        self.scanner.base
                    };
                    self.compact();
                    return Ok(None);
                }
                Outcome::Unit(kind, end) => {
                    let ev = self.process(kind, end)?;
                    self.pos = end;
                    self.compact();
                    if ev.is_some() {
                        return Ok(ev);
                    }
                }
            }
        }
    }

    /// Validate newly received bytes as UTF-8 (a split char at the end waits for more).
    fn validate_utf8(&mut self) {
        if self.utf8_bad.is_some() || self.utf8_valid >= self.buf.len() {
            return;
        }
        let new = self.buf.get(self.utf8_valid..).unwrap_or(&[]);
        match std::str::from_utf8(new) {
            Ok(_) => self.utf8_valid = self.buf.len(),
            Err(e) => {
                self.utf8_valid += e.valid_up_to();
                if e.error_len().is_some() {
                    self.utf8_bad = Some(self.utf8_valid);
                }
            }
        }
    }

    /// Turn a complete unit `buf[base..end]` into an event.
    fn process(&mut self, kind: Unit, end: usize) -> Result<Option<Event>, XmlError> {
        let start = self.scanner.base;
        let raw = self
            .buf
            .get(start..end)
            .ok_or_else(|| XmlError::NotWellFormed("internal: bad unit offsets".into()))?;
        if kind == Unit::Decl {
            tree::check_decl_unit(raw)?;
            self.scanner.decl_seen = true;
            return Ok(None);
        }
        let src = std::str::from_utf8(raw).map_err(|_| XmlError::InvalidUtf8)?;
        match kind {
            Unit::Decl => Ok(None),
            Unit::Header | Unit::HeaderEmpty => {
                let (hdr, ctx) = tree::build_header(src, &self.toks)?;
                self.header = ctx;
                if kind == Unit::HeaderEmpty {
                    self.scanner.phase = Phase::Closed;
                    self.pending = Some(Box::new(Event::StreamEnd));
                } else {
                    self.scanner.phase = Phase::Stream;
                }
                Ok(Some(Event::StreamStart(hdr)))
            }
            Unit::Stanza => {
                let el =
                    tree::build_stanza(src, &self.toks, &self.header.bindings, &mut self.scratch)?;
                Ok(Some(Event::Stanza(el)))
            }
            Unit::StreamEnd => {
                tree::check_stream_end(src, &self.toks, &self.header)?;
                self.scanner.phase = Phase::Closed;
                Ok(Some(Event::StreamEnd))
            }
        }
    }

    /// Drop consumed bytes once they are at least half the buffer (amortized O(1) per byte).
    fn compact(&mut self) {
        let d = self.pos;
        if d == 0 {
            return;
        }
        if d >= self.buf.len() {
            self.buf.clear();
        } else if d >= self.buf.len() / 2 {
            self.buf.drain(..d);
        } else {
            return;
        }
        self.pos = 0;
        self.scan = self.scan.saturating_sub(d);
        self.utf8_valid = self.utf8_valid.saturating_sub(d);
        self.utf8_bad = self.utf8_bad.map(|b| b.saturating_sub(d));
        self.scanner.shift(d);
    }
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;
