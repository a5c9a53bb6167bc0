//! The resumable byte scanner behind the framer: finds where each top-level unit (XML
//! declaration, stream header, stanza, stream end tag) ends, enforcing limits and refusing
//! restricted XML as bytes arrive, and records token offsets so the tree builder never has
//! to lex the stanza a second time.
//!
//! The scanner keeps its lexical state between calls, so a peer sending one byte at a time
//! costs O(1) per byte: scanning resumes exactly where the previous call stopped.

use crate::framer::{Limits, XmlError};

/// Byte classes (bit flags) for the scanner's tight loops.
const WS: u8 = 1;
const NAME: u8 = 2;
const NAME_START: u8 = 4;
/// Bytes that end a fast run of character data: `<`, `&`, `\r`, illegal controls.
const TEXT_SP: u8 = 8;
/// Bytes that end a fast run inside an attribute value: quotes, `<`, `&`, `\t \n \r`,
/// illegal controls.
const ATTR_SP: u8 = 16;
/// C0 controls that XML 1.0 forbids everywhere.
const CTRL: u8 = 32;
/// Bytes that end a fast run inside CDATA: `]`, `\r`, illegal controls.
const CDATA_SP: u8 = 64;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0usize;
    while i < 256 {
        let b = i as u8;
        let mut c = 0u8;
        if b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' {
            c |= WS;
        }
        let alpha = b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80;
        if alpha {
            c |= NAME_START | NAME;
        }
        if b.is_ascii_digit() || b == b'-' || b == b'.' {
            c |= NAME;
        }
        let ctrl = b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r';
        if ctrl {
            c |= CTRL | TEXT_SP | ATTR_SP | CDATA_SP;
        }
        if b == b'<' || b == b'&' || b == b'\r' {
            c |= TEXT_SP;
        }
        if b == b'<'
            || b == b'&'
            || b == b'"'
            || b == b'\''
            || b == b'\t'
            || b == b'\n'
            || b == b'\r'
        {
            c |= ATTR_SP;
        }
        if b == b']' || b == b'\r' {
            c |= CDATA_SP;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

#[inline(always)]
fn is_ws(b: u8) -> bool {
    class(b) & WS != 0
}

#[inline(always)]
fn is_name(b: u8) -> bool {
    class(b) & NAME != 0
}

#[inline(always)]
fn is_name_start(b: u8) -> bool {
    class(b) & NAME_START != 0
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Does the word contain a byte equal to `c`? (exact, no false positives)
#[inline(always)]
fn has_byte(v: u64, c: u8) -> bool {
    let x = v ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI != 0
}

/// Does the word contain a byte below 0x20 (any C0 control, including tab/CR/LF)?
#[inline(always)]
fn has_ctrl(v: u64) -> bool {
    v.wrapping_sub(LO * 0x20) & !v & HI != 0
}

/// Skip ahead over whole 8-byte words holding none of the run's special bytes: controls,
/// `<`, `&` and, when `quotes`, `'` and `"` (for CDATA, `]` instead of `<`/`&`). The byte
/// loop that follows finds the exact stop. Returns the first index that may be special.
#[inline(always)]
fn skip_words(buf: &[u8], mut i: usize, stop: usize, kind: u8) -> usize {
    while i + 8 <= stop {
        let Some(w) = buf.get(i..i + 8) else { break };
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let v = u64::from_le_bytes(a);
        let special = has_ctrl(v)
            || match kind {
                TEXT_SP => has_byte(v, b'<') || has_byte(v, b'&'),
                ATTR_SP => {
                    has_byte(v, b'<')
                        || has_byte(v, b'&')
                        || has_byte(v, b'\'')
                        || has_byte(v, b'"')
                }
                _ => has_byte(v, b']'),
            };
        if special {
            break;
        }
        i += 8;
    }
    i
}

/// Index of the first byte in `buf[i..stop]` whose class has bit `kind`, or `stop`.
/// Word-at-a-time where possible; a word flagged only for harmless controls (tab, LF) is
/// stepped bytewise and word skipping resumes after it.
#[inline(always)]
fn run_end(buf: &[u8], mut i: usize, stop: usize, kind: u8) -> usize {
    loop {
        i = skip_words(buf, i, stop, kind);
        let lim = stop.min(i + 8);
        while i < lim && class(buf[i]) & kind == 0 {
            i += 1;
        }
        if i < lim || i >= stop {
            return i;
        }
    }
}

fn nwf(msg: &str) -> XmlError {
    XmlError::NotWellFormed(msg.to_owned())
}

fn restricted(msg: &str) -> XmlError {
    XmlError::RestrictedXml(msg.to_owned())
}

fn limit(msg: &str) -> XmlError {
    XmlError::LimitExceeded(msg.to_owned())
}

/// Where the stream is, at the top level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the stream header: whitespace, an XML declaration, then the header.
    Prolog,
    /// Inside the stream: stanzas, whitespace, and finally the stream end tag.
    Stream,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
}

/// The kind of a complete top-level unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Decl,
    Header,
    /// `<stream:stream .../>`: header and end at once.
    HeaderEmpty,
    Stanza,
    StreamEnd,
}

/// Lexical state, resumable at any byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Between top-level units (whitespace only).
    Top,
    /// After a top-level `<`.
    TopLt,
    /// Inside `<?xml ... ?>`.
    DeclBody,
    /// After a `?` inside the XML declaration.
    DeclQ,
    /// After `<!`.
    Bang,
    /// Matching `[CDATA[` after `<!`; the value is how many bytes matched.
    CdataOpen(u8),
    CData,
    /// One `]` seen inside CDATA.
    CDataB1,
    /// `]]` seen inside CDATA.
    CDataB2,
    StartName,
    /// Inside a start tag, after whitespace.
    InTag,
    AttrName,
    AfterAttrName,
    AfterEq,
    /// Inside a quoted attribute value; the quote byte.
    AttrValue(u8),
    AfterAttrValue,
    /// After `/` in a start tag.
    EmptySlash,
    EndName,
    EndTrail,
    /// Character data inside a stanza.
    Text,
    /// After `<` inside a stanza.
    Lt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Start tag name `a..b`.
    Start,
    /// Attribute name `a..b`, raw value `c..d`.
    Attr,
    /// `>` ending a start tag.
    StartEnd,
    /// `/>` ending a start tag.
    EmptyEnd,
    /// Raw character data `a..b`.
    Text,
    /// CDATA content `a..b`.
    CData,
    /// End tag name `a..b`.
    End,
}

/// A token: offsets are relative to the start of the unit. `flag` means the raw text or
/// attribute value needs decoding (entities, `\r`, or attribute whitespace normalization).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tok {
    pub kind: TokKind,
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub d: usize,
    pub flag: bool,
}

impl Tok {
    fn new(kind: TokKind, a: usize, b: usize, flag: bool) -> Tok {
        Tok {
            kind,
            a,
            b,
            c: 0,
            d: 0,
            flag,
        }
    }
}

/// Result of one scanning call.
pub(crate) enum Outcome {
    /// Need more bytes.
    More,
    /// A unit ends just before the given absolute offset.
    Unit(Unit, usize),
    Fail(XmlError),
}

/// The resumable scanner state.
pub(crate) struct Scanner {
    lex: Lex,
    pub phase: Phase,
    pub decl_seen: bool,
    unit: Unit,
    /// Absolute offset of the current unit's `<` in the framer's buffer.
    pub base: usize,
    /// Byte budget of the current unit.
    limit: usize,
    /// Open elements inside the current stanza.
    depth: usize,
    attrs: usize,
    ns_decls: usize,
    /// Start (relative to `base`) of the current name, text run, CDATA or attribute value.
    mark: usize,
    /// Current attribute name (relative offsets).
    attr_a: usize,
    attr_b: usize,
    /// Current text run / attribute value needs decoding.
    flag: bool,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            lex: Lex::Top,
            phase: Phase::Prolog,
            decl_seen: false,
            unit: Unit::Stanza,
            base: 0,
            limit: 0,
            depth: 0,
            attrs: 0,
            ns_decls: 0,
            mark: 0,
            attr_a: 0,
            attr_b: 0,
            flag: false,
        }
    }

    /// True when no unit is in progress.
    pub fn at_top(&self) -> bool {
        self.lex == Lex::Top
    }

    /// Shift absolute offsets after the framer dropped `by` bytes from its buffer front.
    pub fn shift(&mut self, by: usize) {
        self.base = self.base.saturating_sub(by);
    }

    /// Scan `buf[i..avail]`, resuming from the saved state. Returns the new scan position.
    pub fn scan(
        &mut self,
        buf: &[u8],
        mut i: usize,
        avail: usize,
        toks: &mut Vec<Tok>,
        lim: &Limits,
    ) -> (usize, Outcome) {
        let avail = avail.min(buf.len());
        let mut stop = if self.lex == Lex::Top {
            avail
        } else {
            avail.min(self.base.saturating_add(self.limit))
        };

        macro_rules! fail {
            ($e:expr) => {
                return (i, Outcome::Fail($e))
            };
        }
        macro_rules! unit_done {
            ($u:expr) => {{
                self.lex = Lex::Top;
                return (i + 1, Outcome::Unit($u, i + 1));
            }};
        }

        while i < stop {
            match self.lex {
                Lex::Top => {
                    let b = buf[i];
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if self.phase == Phase::Closed {
                        fail!(nwf("data after the end of the stream"));
                    }
                    if b != b'<' {
                        fail!(nwf("character data at the top level of the stream"));
                    }
                    self.base = i;
                    self.limit = if self.phase == Phase::Prolog {
                        lim.max_header_bytes
                    } else {
                        lim.max_stanza_bytes
                    };
                    stop = avail.min(i.saturating_add(self.limit));
                    toks.clear();
                    self.depth = 0;
                    self.lex = Lex::TopLt;
                    i += 1;
                }
                Lex::TopLt => {
                    let b = buf[i];
                    match b {
                        b'?' => {
                            if self.phase == Phase::Prolog && !self.decl_seen {
                                self.unit = Unit::Decl;
                                self.lex = Lex::DeclBody;
                                i += 1;
                            } else {
                                fail!(restricted("processing instruction"));
                            }
                        }
                        b'!' => {
                            self.lex = Lex::Bang;
                            i += 1;
                        }
                        b'/' => {
                            if self.phase == Phase::Stream {
                                self.unit = Unit::StreamEnd;
                                self.lex = Lex::EndName;
                                i += 1;
                                self.mark = i - self.base;
                            } else {
                                fail!(nwf("end tag before the stream header"));
                            }
                        }
                        _ if is_name_start(b) => {
                            self.unit = if self.phase == Phase::Prolog {
                                Unit::Header
                            } else {
                                Unit::Stanza
                            };
                            if self.unit == Unit::Stanza && lim.max_depth == 0 {
                                fail!(limit("element nesting too deep"));
                            }
                            self.begin_start_tag(i);
                        }
                        _ => fail!(nwf("bad character after '<'")),
                    }
                }
                Lex::DeclBody => {
                    let b = buf[i];
                    if class(b) & CTRL != 0 {
                        fail!(nwf("illegal character"));
                    }
                    if b == b'?' {
                        self.lex = Lex::DeclQ;
                    }
                    i += 1;
                }
                Lex::DeclQ => {
                    let b = buf[i];
                    if b == b'>' {
                        unit_done!(Unit::Decl);
                    }
                    if b != b'?' {
                        self.lex = Lex::DeclBody;
                        continue; // re-examine in DeclBody
                    }
                    i += 1;
                }
                Lex::Bang => {
                    let b = buf[i];
                    match b {
                        b'[' if self.depth > 0 => {
                            self.lex = Lex::CdataOpen(1);
                            i += 1;
                        }
                        b'[' => fail!(nwf("CDATA section outside a stanza")),
                        b'-' => fail!(restricted("comment")),
                        _ => fail!(restricted("DTD or markup declaration")),
                    }
                }
                Lex::CdataOpen(k) => {
                    const OPEN: &[u8; 7] = b"[CDATA[";
                    let k = k as usize;
                    if OPEN.get(k) != Some(&buf[i]) {
                        fail!(nwf("bad CDATA section start"));
                    }
                    i += 1;
                    if k + 1 == OPEN.len() {
                        self.lex = Lex::CData;
                        self.mark = i - self.base;
                        self.flag = false;
                    } else {
                        self.lex = Lex::CdataOpen((k + 1) as u8);
                    }
                }
                Lex::CData => {
                    i = run_end(buf, i, stop, CDATA_SP);
                    if i >= stop {
                        break;
                    }
                    match buf[i] {
                        b']' => self.lex = Lex::CDataB1,
                        b'\r' => self.flag = true,
                        _ => fail!(nwf("illegal character")),
                    }
                    i += 1;
                }
                Lex::CDataB1 => {
                    if buf[i] == b']' {
                        self.lex = Lex::CDataB2;
                        i += 1;
                    } else {
                        self.lex = Lex::CData;
                    }
                }
                Lex::CDataB2 => match buf[i] {
                    b'>' => {
                        let end = (i - self.base).saturating_sub(2);
                        if end > self.mark {
                            toks.push(Tok::new(TokKind::CData, self.mark, end, self.flag));
                        }
                        i += 1;
                        self.begin_text(i);
                    }
                    b']' => i += 1,
                    _ => self.lex = Lex::CData,
                },
                Lex::StartName | Lex::AttrName | Lex::EndName => {
                    let name_start = self.base + self.mark;
                    let nstop = stop.min(
                        name_start
                            .saturating_add(lim.max_name_len)
                            .saturating_add(1),
                    );
                    while i < nstop && is_name(buf[i]) {
                        i += 1;
                    }
                    if i - name_start > lim.max_name_len {
                        fail!(limit("name too long"));
                    }
                    if i >= stop {
                        break;
                    }
                    let rel = i - self.base;
                    let b = buf[i];
                    match self.lex {
                        Lex::StartName => {
                            toks.push(Tok::new(TokKind::Start, self.mark, rel, false));
                            match b {
                                _ if is_ws(b) => self.lex = Lex::InTag,
                                b'/' => self.lex = Lex::EmptySlash,
                                b'>' => {
                                    if let Some(u) = self.start_tag_end(i, toks) {
                                        unit_done!(u);
                                    }
                                }
                                _ => fail!(nwf("bad character in element name")),
                            }
                        }
                        Lex::AttrName => {
                            let name = &buf[name_start..i];
                            if name == b"xmlns" || name.starts_with(b"xmlns:") {
                                self.ns_decls += 1;
                                if self.ns_decls > lim.max_ns_decls {
                                    fail!(limit("too many namespace declarations"));
                                }
                            }
                            self.attr_a = self.mark;
                            self.attr_b = rel;
                            match b {
                                b'=' => self.lex = Lex::AfterEq,
                                _ if is_ws(b) => self.lex = Lex::AfterAttrName,
                                _ => fail!(nwf("bad character in attribute name")),
                            }
                        }
                        _ => {
                            if rel == self.mark {
                                fail!(nwf("empty end tag name"));
                            }
                            toks.push(Tok::new(TokKind::End, self.mark, rel, false));
                            match b {
                                b'>' => {
                                    if let Some(u) = self.end_tag_end(i) {
                                        unit_done!(u);
                                    }
                                }
                                _ if is_ws(b) => self.lex = Lex::EndTrail,
                                _ => fail!(nwf("bad character in end tag")),
                            }
                        }
                    }
                    i += 1;
                }
                Lex::InTag | Lex::AfterAttrValue => {
                    let b = buf[i];
                    if is_ws(b) {
                        self.lex = Lex::InTag;
                        i += 1;
                        continue;
                    }
                    match b {
                        b'>' => {
                            if let Some(u) = self.start_tag_end(i, toks) {
                                unit_done!(u);
                            }
                            i += 1;
                        }
                        b'/' => {
                            self.lex = Lex::EmptySlash;
                            i += 1;
                        }
                        _ if self.lex == Lex::AfterAttrValue => {
                            fail!(nwf("missing whitespace between attributes"))
                        }
                        _ if is_name_start(b) => {
                            self.attrs += 1;
                            if self.attrs > lim.max_attrs {
                                fail!(limit("too many attributes"));
                            }
                            self.mark = i - self.base;
                            self.lex = Lex::AttrName;
                            i += 1;
                        }
                        _ => fail!(nwf("bad character in start tag")),
                    }
                }
                Lex::AfterAttrName => {
                    let b = buf[i];
                    if b == b'=' {
                        self.lex = Lex::AfterEq;
                    } else if !is_ws(b) {
                        fail!(nwf("expected '=' after attribute name"));
                    }
                    i += 1;
                }
                Lex::AfterEq => {
                    let b = buf[i];
                    if b == b'"' || b == b'\'' {
                        self.lex = Lex::AttrValue(b);
                        self.mark = i + 1 - self.base;
                        self.flag = false;
                    } else if !is_ws(b) {
                        fail!(nwf("expected a quoted attribute value"));
                    }
                    i += 1;
                }
                Lex::AttrValue(q) => {
                    i = run_end(buf, i, stop, ATTR_SP);
                    if i >= stop {
                        break;
                    }
                    let b = buf[i];
                    if b == q {
                        toks.push(Tok {
                            kind: TokKind::Attr,
                            a: self.attr_a,
                            b: self.attr_b,
                            c: self.mark,
                            d: i - self.base,
                            flag: self.flag,
                        });
                        self.lex = Lex::AfterAttrValue;
                    } else {
                        match b {
                            b'"' | b'\'' => {}
                            b'&' | b'\t' | b'\n' | b'\r' => self.flag = true,
                            b'<' => fail!(nwf("'<' in attribute value")),
                            _ => fail!(nwf("illegal character")),
                        }
                    }
                    i += 1;
                }
                Lex::EmptySlash => {
                    if buf[i] != b'>' {
                        fail!(nwf("expected '>' after '/'"));
                    }
                    toks.push(Tok::new(TokKind::EmptyEnd, 0, 0, false));
                    match self.unit {
                        Unit::Header => unit_done!(Unit::HeaderEmpty),
                        _ if self.depth == 0 => unit_done!(Unit::Stanza),
                        _ => {
                            i += 1;
                            self.begin_text(i);
                        }
                    }
                }
                Lex::EndTrail => {
                    let b = buf[i];
                    if b == b'>' {
                        if let Some(u) = self.end_tag_end(i) {
                            unit_done!(u);
                        }
                    } else if !is_ws(b) {
                        fail!(nwf("bad character in end tag"));
                    }
                    i += 1;
                }
                Lex::Text => {
                    i = run_end(buf, i, stop, TEXT_SP);
                    if i >= stop {
                        break;
                    }
                    match buf[i] {
                        b'<' => {
                            let rel = i - self.base;
                            if rel > self.mark {
                                toks.push(Tok::new(TokKind::Text, self.mark, rel, self.flag));
                            }
                            self.lex = Lex::Lt;
                        }
                        b'&' | b'\r' => self.flag = true,
                        _ => fail!(nwf("illegal character")),
                    }
                    i += 1;
                }
                Lex::Lt => {
                    let b = buf[i];
                    match b {
                        b'/' => {
                            self.lex = Lex::EndName;
                            i += 1;
                            self.mark = i - self.base;
                        }
                        b'!' => {
                            self.lex = Lex::Bang;
                            i += 1;
                        }
                        b'?' => fail!(restricted("processing instruction")),
                        _ if is_name_start(b) => {
                            if self.depth + 1 > lim.max_depth {
                                fail!(limit("element nesting too deep"));
                            }
                            self.begin_start_tag(i);
                        }
                        _ => fail!(nwf("bad character after '<'")),
                    }
                }
            }
        }
        if self.lex != Lex::Top && i >= self.base.saturating_add(self.limit) {
            let what = if self.phase == Phase::Prolog {
                "stream header too large"
            } else {
                "stanza too large"
            };
            return (i, Outcome::Fail(limit(what)));
        }
        (i, Outcome::More)
    }

    #[inline]
    fn begin_start_tag(&mut self, i: usize) {
        self.lex = Lex::StartName;
        self.mark = i - self.base;
        self.attrs = 0;
        self.ns_decls = 0;
    }

    #[inline]
    fn begin_text(&mut self, i: usize) {
        self.lex = Lex::Text;
        self.mark = i - self.base;
        self.flag = false;
    }

    /// `>` of a start tag at `i`. Returns the unit if it is complete.
    #[inline]
    fn start_tag_end(&mut self, i: usize, toks: &mut Vec<Tok>) -> Option<Unit> {
        toks.push(Tok::new(TokKind::StartEnd, 0, 0, false));
        if self.unit == Unit::Header {
            return Some(Unit::Header);
        }
        self.depth += 1;
        self.begin_text(i + 1);
        None
    }

    /// `>` of an end tag at `i`. Returns the unit if it is complete.
    #[inline]
    fn end_tag_end(&mut self, i: usize) -> Option<Unit> {
        if self.unit == Unit::StreamEnd {
            return Some(Unit::StreamEnd);
        }
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            return Some(Unit::Stanza);
        }
        self.begin_text(i + 1);
        None
    }
}
