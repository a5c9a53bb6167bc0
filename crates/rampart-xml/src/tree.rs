//! Builds element trees and stream headers from the scanner's tokens: namespace resolution,
//! entity and character-reference decoding, duplicate-attribute and end-tag checks.

use std::borrow::Cow;

use crate::NS_STREAM;
use crate::element::{Element, Node};
use crate::framer::{StreamHeader, XmlError};
use crate::scan::{Tok, TokKind};

/// The namespace bound to the `xml` prefix.
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of namespace declarations themselves (may never be bound).
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

fn nwf(msg: &str) -> XmlError {
    XmlError::NotWellFormed(msg.to_owned())
}

/// A slice of the unit text, never panicking.
#[inline]
fn slice(src: &str, a: usize, b: usize) -> Result<&str, XmlError> {
    src.get(a..b).ok_or_else(|| nwf("bad token offsets"))
}

/// Split `p:local` into (prefix, local). At most one colon, neither part empty.
fn split_qname(q: &str) -> Result<(Option<&str>, &str), XmlError> {
    match q.find(':') {
        None => Ok((None, q)),
        Some(i) => {
            let (p, rest) = q.split_at(i);
            let local = rest.get(1..).unwrap_or("");
            if p.is_empty() || local.is_empty() || local.contains(':') {
                return Err(nwf("bad qualified name"));
            }
            Ok((Some(p), local))
        }
    }
}

/// Is `s` an XML Name (approximately: the scanner's name classes)?
fn is_xml_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80 => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.') || b >= 0x80)
}

/// Is `c` a character XML 1.0 allows in a document?
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Decode one reference starting at `&` (`s` begins just after the `&`). Returns the decoded
/// char and the number of bytes consumed after the `&` (including `;`).
fn decode_ref(s: &str) -> Result<(char, usize), XmlError> {
    // Longest legal reference body: "#x10FFFF" (8) or "#1114111" (8); names are short.
    let semi = match s.as_bytes().iter().take(34).position(|&b| b == b';') {
        Some(p) => p,
        None => return Err(nwf("unterminated entity reference")),
    };
    let name = s.get(..semi).ok_or_else(|| nwf("bad entity reference"))?;
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            if let Some(num) = name.strip_prefix('#') {
                let (digits, radix) = match num.strip_prefix('x') {
                    Some(h) => (h, 16),
                    None => (num, 10),
                };
                if digits.is_empty()
                    || digits.len() > 8
                    || !digits.bytes().all(|b| (b as char).is_digit(radix))
                {
                    return Err(nwf("bad character reference"));
                }
                let v = u32::from_str_radix(digits, radix)
                    .map_err(|_| nwf("bad character reference"))?;
                if !is_xml_char(v) {
                    return Err(nwf("character reference to an illegal character"));
                }
                char::from_u32(v).ok_or_else(|| nwf("bad character reference"))?
            } else if is_xml_name(name) {
                return Err(XmlError::RestrictedXml(format!(
                    "entity reference &{name};"
                )));
            } else {
                return Err(nwf("bad entity reference"));
            }
        }
    };
    Ok((c, semi + 1))
}

/// Decode raw character data or an attribute value. `attr` applies attribute-value
/// normalization (literal tab/newline/CR become a space). `refs` says `&` may occur (false
/// for CDATA content). Line ends are normalized (`\r\n` and lone `\r` become `\n`).
fn decode<'a>(raw: &'a str, needs: bool, attr: bool, refs: bool) -> Result<Cow<'a, str>, XmlError> {
    if !needs {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'&' if refs => {
                out.push_str(raw.get(last..i).unwrap_or(""));
                let rest = raw.get(i + 1..).unwrap_or("");
                let (c, used) = decode_ref(rest)?;
                out.push(c);
                i += 1 + used;
                last = i;
            }
            b'\r' => {
                out.push_str(raw.get(last..i).unwrap_or(""));
                out.push(if attr { ' ' } else { '\n' });
                i += 1;
                if bytes.get(i) == Some(&b'\n') {
                    i += 1;
                }
                last = i;
            }
            b'\t' | b'\n' if attr => {
                out.push_str(raw.get(last..i).unwrap_or(""));
                out.push(' ');
                i += 1;
                last = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(raw.get(last..).unwrap_or(""));
    Ok(Cow::Owned(out))
}

#[inline]
fn attr_value<'a>(src: &'a str, t: &Tok) -> Result<Cow<'a, str>, XmlError> {
    decode(slice(src, t.c, t.d)?, t.flag, true, true)
}

/// Reject duplicate attribute names among `attrs`.
fn check_duplicates(src: &str, attrs: &[Tok]) -> Result<(), XmlError> {
    for (x, tx) in attrs.iter().enumerate() {
        let nx = slice(src, tx.a, tx.b)?;
        for ty in &attrs[..x] {
            if slice(src, ty.a, ty.b)? == nx {
                return Err(nwf("duplicate attribute"));
            }
        }
    }
    Ok(())
}

/// Validate a namespace declaration `xmlns:prefix="uri"` (prefix `""` for the default).
fn check_decl(prefix: &str, uri: &str) -> Result<(), XmlError> {
    if prefix.is_empty() {
        if uri == NS_XML || uri == NS_XMLNS {
            return Err(nwf("reserved namespace bound as default"));
        }
        return Ok(());
    }
    if prefix.contains(':') {
        return Err(nwf("bad namespace prefix"));
    }
    if uri.is_empty() {
        return Err(nwf("empty namespace for a prefix"));
    }
    if prefix == "xmlns" || uri == NS_XMLNS {
        return Err(nwf("the xmlns prefix cannot be declared"));
    }
    if (prefix == "xml") != (uri == NS_XML) {
        return Err(nwf("the xml prefix is bound to its namespace only"));
    }
    Ok(())
}

/// If `name` is a namespace declaration, its prefix (`""` for `xmlns`).
#[inline]
fn decl_prefix(name: &str) -> Option<&str> {
    if name == "xmlns" {
        Some("")
    } else {
        name.strip_prefix("xmlns:")
    }
}

/// A namespace declared inside the stanza: prefix at `src[pa..pb]` (empty for the default).
pub(crate) struct LocalNs {
    pa: usize,
    pb: usize,
    val: NsVal,
}

/// A declared namespace URI: raw in the source, or decoded (it contained references).
enum NsVal {
    Raw(usize, usize),
    Owned(String),
}

/// In-scope bindings: those declared inside the stanza (innermost last), then the stream's.
struct Scope<'a, 's, 'b> {
    src: &'a str,
    local: &'s mut Vec<LocalNs>,
    base: &'b [(String, String)],
}

impl Scope<'_, '_, '_> {
    fn lookup(&self, prefix: &str) -> Option<&str> {
        // Lengths first: these are tiny strings and a library memcmp call costs more.
        let same = |p: &str| p.len() == prefix.len() && (prefix.is_empty() || p == prefix);
        for l in self.local.iter().rev() {
            if l.pb.wrapping_sub(l.pa) == prefix.len() && same(self.src.get(l.pa..l.pb)?) {
                return Some(match &l.val {
                    NsVal::Raw(c, d) => self.src.get(*c..*d).unwrap_or(""),
                    NsVal::Owned(s) => s.as_str(),
                });
            }
        }
        if prefix == "xml" {
            return Some(NS_XML);
        }
        self.base
            .iter()
            .rev()
            .find(|(p, _)| same(p))
            .map(|(_, u)| u.as_str())
    }

    fn resolve_element(&self, prefix: Option<&str>) -> Result<&str, XmlError> {
        match prefix {
            None => Ok(self.lookup("").unwrap_or("")),
            Some(p) => self
                .lookup(p)
                .ok_or_else(|| nwf("undeclared namespace prefix")),
        }
    }
}

/// An open element during tree building.
pub(crate) struct Frame {
    el: Element,
    qa: usize,
    qb: usize,
    ns_mark: usize,
}

/// Reusable buffers for [`build_stanza`].
#[derive(Default)]
pub(crate) struct Scratch {
    frames: Vec<Frame>,
    local: Vec<LocalNs>,
}

#[cfg(test)]
impl Scratch {
    /// Elements of room held (tests of idle memory).
    pub(crate) fn capacity(&self) -> usize {
        self.frames.capacity() + self.local.capacity()
    }
}

/// Open an element from its start-tag tokens (`tag[0]` is the `Start` token, then `Attr`s).
fn open_element(
    src: &str,
    tag: &[Tok],
    scope: &mut Scope<'_, '_, '_>,
) -> Result<(Element, usize, usize, usize), XmlError> {
    let ns_mark = scope.local.len();
    let start = tag.first().ok_or_else(|| nwf("missing start tag"))?;
    let attrs = tag.get(1..).unwrap_or(&[]);
    if attrs.len() > 1 {
        check_duplicates(src, attrs)?;
    }
    let mut regular = 0usize;
    for t in attrs {
        let name = slice(src, t.a, t.b)?;
        match decl_prefix(name) {
            Some(p) => {
                let uri = attr_value(src, t)?;
                check_decl(p, &uri)?;
                let val = match uri {
                    Cow::Borrowed(_) => NsVal::Raw(t.c, t.d),
                    Cow::Owned(s) => NsVal::Owned(s),
                };
                scope.local.push(LocalNs {
                    pa: t.b - p.len(),
                    pb: t.b,
                    val,
                });
            }
            None => regular += 1,
        }
    }
    let qname = slice(src, start.a, start.b)?;
    let (prefix, local) = split_qname(qname)?;
    let ns = scope.resolve_element(prefix)?.to_owned();
    let mut el_attrs = Vec::with_capacity(regular);
    if regular > 0 {
        for t in attrs {
            let name = slice(src, t.a, t.b)?;
            if decl_prefix(name).is_some() {
                continue;
            }
            let (p, _) = split_qname(name)?;
            if let Some(p) = p
                && p != "xml"
                && scope.lookup(p).is_none()
            {
                return Err(nwf("undeclared attribute prefix"));
            }
            el_attrs.push((name.to_owned(), attr_value(src, t)?.into_owned()));
        }
    }
    let el = Element {
        name: local.to_owned(),
        ns,
        attrs: el_attrs,
        children: Vec::new(),
    };
    Ok((el, start.a, start.b, ns_mark))
}

fn push_text(el: &mut Element, s: Cow<'_, str>) {
    if s.is_empty() {
        return;
    }
    if let Some(Node::Text(t)) = el.children.last_mut() {
        t.push_str(&s);
    } else {
        el.children.push(Node::Text(s.into_owned()));
    }
}

/// Build the tree of one complete stanza from its tokens.
pub(crate) fn build_stanza(
    src: &str,
    toks: &[Tok],
    base: &[(String, String)],
    scratch: &mut Scratch,
) -> Result<Element, XmlError> {
    let frames = &mut scratch.frames;
    frames.clear();
    scratch.local.clear();
    let mut scope = Scope {
        src,
        local: &mut scratch.local,
        base,
    };
    let mut tag_start = 0usize;
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            TokKind::Start => tag_start = k,
            TokKind::Attr => {}
            TokKind::StartEnd | TokKind::EmptyEnd => {
                let tag = toks
                    .get(tag_start..k)
                    .ok_or_else(|| nwf("bad token stream"))?;
                let (el, qa, qb, ns_mark) = open_element(src, tag, &mut scope)?;
                if t.kind == TokKind::StartEnd {
                    frames.push(Frame {
                        el,
                        qa,
                        qb,
                        ns_mark,
                    });
                    continue;
                }
                scope.local.truncate(ns_mark);
                match frames.last_mut() {
                    Some(parent) => parent.el.children.push(Node::Element(el)),
                    None => return finish(el, k, toks.len()),
                }
            }
            TokKind::Text | TokKind::CData => {
                let raw = slice(src, t.a, t.b)?;
                let text = decode(raw, t.flag, false, t.kind == TokKind::Text)?;
                match frames.last_mut() {
                    Some(f) => push_text(&mut f.el, text),
                    None => return Err(nwf("character data outside the stanza")),
                }
            }
            TokKind::End => {
                let f = frames.pop().ok_or_else(|| nwf("unexpected end tag"))?;
                if slice(src, t.a, t.b)? != slice(src, f.qa, f.qb)? {
                    return Err(nwf("mismatched end tag"));
                }
                scope.local.truncate(f.ns_mark);
                match frames.last_mut() {
                    Some(parent) => parent.el.children.push(Node::Element(f.el)),
                    None => return finish(f.el, k, toks.len()),
                }
            }
        }
    }
    Err(nwf("incomplete stanza"))
}

fn finish(el: Element, k: usize, n: usize) -> Result<Element, XmlError> {
    if k + 1 != n {
        return Err(nwf("data after the stanza"));
    }
    Ok(el)
}

/// What the framer keeps from the stream header to parse what follows.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderCtx {
    /// The header's qualified name as written (`stream:stream`), to match the end tag.
    pub qname: String,
    /// Namespace declarations on the header (`""` is the default namespace).
    pub bindings: Vec<(String, String)>,
}

/// Build the stream header from its start-tag tokens.
pub(crate) fn build_header(src: &str, toks: &[Tok]) -> Result<(StreamHeader, HeaderCtx), XmlError> {
    let start = match toks.first() {
        Some(t) if t.kind == TokKind::Start => t,
        _ => return Err(nwf("missing stream header")),
    };
    let attrs: Vec<Tok> = toks
        .iter()
        .filter(|t| t.kind == TokKind::Attr)
        .copied()
        .collect();
    check_duplicates(src, &attrs)?;
    let mut hdr = StreamHeader::default();
    let mut ctx = HeaderCtx::default();
    for t in &attrs {
        let name = slice(src, t.a, t.b)?;
        let value = attr_value(src, t)?.into_owned();
        if let Some(p) = decl_prefix(name) {
            check_decl(p, &value)?;
            ctx.bindings.push((p.to_owned(), value.clone()));
        }
        hdr.attrs.push((name.to_owned(), value));
    }
    let mut no_local = Vec::new();
    let scope = Scope {
        src,
        local: &mut no_local,
        base: &ctx.bindings,
    };
    for (name, value) in &hdr.attrs {
        if decl_prefix(name).is_some() {
            continue;
        }
        let (p, local) = split_qname(name)?;
        match p {
            None => {
                let slot = match local {
                    "to" => &mut hdr.to,
                    "from" => &mut hdr.from,
                    "id" => &mut hdr.id,
                    "version" => &mut hdr.version,
                    _ => continue,
                };
                *slot = Some(value.clone());
            }
            Some("xml") => {
                if local == "lang" {
                    hdr.lang = Some(value.clone());
                }
            }
            Some(p) => {
                if scope.lookup(p).is_none() {
                    return Err(nwf("undeclared attribute prefix"));
                }
            }
        }
    }
    let qname = slice(src, start.a, start.b)?;
    let (prefix, local) = split_qname(qname)?;
    let ns = scope.resolve_element(prefix)?.to_owned();
    if local != "stream" || ns != NS_STREAM {
        return Err(XmlError::InvalidNamespace(format!(
            "root element must be stream in {NS_STREAM}, got {{{ns}}}{local}"
        )));
    }
    hdr.default_ns = scope.lookup("").unwrap_or("").to_owned();
    hdr.stream_ns = ns;
    ctx.qname = qname.to_owned();
    // Kept for the stream's whole life: no spare room (idle memory per connection).
    ctx.bindings.shrink_to_fit();
    Ok((hdr, ctx))
}

/// Check the end tag `</stream:stream>` against the header's name.
pub(crate) fn check_stream_end(src: &str, toks: &[Tok], ctx: &HeaderCtx) -> Result<(), XmlError> {
    match toks {
        [t] if t.kind == TokKind::End && slice(src, t.a, t.b)? == ctx.qname => Ok(()),
        _ => Err(nwf("end tag does not match the stream header")),
    }
}

/// Check an XML declaration `<?xml version='1.0' encoding='UTF-8'?>`.
pub(crate) fn check_decl_unit(raw: &[u8]) -> Result<(), XmlError> {
    let body = match raw
        .strip_prefix(b"<?xml")
        .and_then(|r| r.strip_suffix(b"?>"))
    {
        Some(b) => b,
        None => return Err(XmlError::RestrictedXml("processing instruction".into())),
    };
    match body.first() {
        Some(b) if b.is_ascii_whitespace() => {}
        _ => return Err(XmlError::RestrictedXml("processing instruction".into())),
    }
    let mut i = 0;
    let mut version: Option<&[u8]> = None;
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    loop {
        while i < body.len() && ws(body[i]) {
            i += 1;
        }
        if i >= body.len() {
            break;
        }
        let ns = i;
        while i < body.len() && body[i].is_ascii_alphabetic() {
            i += 1;
        }
        let name = &body[ns..i];
        while i < body.len() && ws(body[i]) {
            i += 1;
        }
        if body.get(i) != Some(&b'=') {
            return Err(nwf("bad XML declaration"));
        }
        i += 1;
        while i < body.len() && ws(body[i]) {
            i += 1;
        }
        let q = match body.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => q,
            _ => return Err(nwf("bad XML declaration")),
        };
        i += 1;
        let vs = i;
        while i < body.len() && body[i] != q {
            i += 1;
        }
        if i >= body.len() {
            return Err(nwf("bad XML declaration"));
        }
        let value = &body[vs..i];
        i += 1;
        match name {
            b"version" => version = Some(value),
            b"encoding" => {
                if !value.eq_ignore_ascii_case(b"utf-8") && !value.eq_ignore_ascii_case(b"utf8") {
                    return Err(XmlError::InvalidUtf8);
                }
            }
            b"standalone" => {}
            _ => return Err(nwf("bad XML declaration")),
        }
        if i < body.len() && !ws(body[i]) {
            return Err(nwf("bad XML declaration"));
        }
    }
    match version {
        Some(v) if v.starts_with(b"1.") => Ok(()),
        _ => Err(nwf("XML declaration without version 1.x")),
    }
}
