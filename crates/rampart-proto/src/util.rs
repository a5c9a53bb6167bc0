//! Small helpers shared by the typed parsers.

use crate::{Element, Jid, Node, ParseError, ns};

/// Fail unless `e` is `<name xmlns=ns/>`.
pub(crate) fn check(e: &Element, name: &'static str, ns: &str) -> Result<(), ParseError> {
    if e.is(name, ns) {
        Ok(())
    } else {
        Err(wrong(e, name))
    }
}

/// Fail unless `e` is named `name` in `jabber:client` or `jabber:server`.
pub(crate) fn check_stanza_ns(e: &Element, name: &'static str) -> Result<(), ParseError> {
    if e.name == name && (e.ns == ns::CLIENT || e.ns == ns::SERVER) {
        Ok(())
    } else {
        Err(wrong(e, name))
    }
}

pub(crate) fn wrong(e: &Element, expected: &'static str) -> ParseError {
    let mut found = format!("{{{}}}{}", e.ns, e.name);
    if found.len() > 128 {
        let mut end = 128;
        while !found.is_char_boundary(end) {
            end -= 1;
        }
        found.truncate(end);
    }
    ParseError::WrongElement { expected, found }
}

/// A required attribute.
pub(crate) fn req_attr<'a>(e: &'a Element, name: &'static str) -> Result<&'a str, ParseError> {
    e.attr(name).ok_or(ParseError::MissingAttr(name))
}

/// An optional attribute, owned.
pub(crate) fn opt_attr(e: &Element, name: &str) -> Option<String> {
    e.attr(name).map(str::to_owned)
}

/// An optional JID attribute.
pub(crate) fn opt_jid(e: &Element, name: &str) -> Result<Option<Jid>, ParseError> {
    e.attr(name)
        .map(Jid::parse)
        .transpose()
        .map_err(ParseError::from)
}

/// The `xml:lang` attribute.
pub(crate) fn lang(e: &Element) -> Option<String> {
    opt_attr(e, "xml:lang")
}

/// Fail if `e` has any child element (text-only elements).
pub(crate) fn no_children(e: &Element) -> Result<(), ParseError> {
    match e.elements().next() {
        Some(c) => Err(ParseError::UnexpectedChild(c.name.clone())),
        None => Ok(()),
    }
}

/// Text of a text-only element.
pub(crate) fn text_only(e: &Element) -> Result<String, ParseError> {
    no_children(e)?;
    Ok(e.text())
}

/// Set `slot` from a once-only child, failing on duplicates.
pub(crate) fn once<T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::Duplicate(name));
    }
    *slot = Some(v);
    Ok(())
}

/// A text-only element.
pub(crate) fn text_el(name: &str, ns: &str, text: impl Into<String>) -> Element {
    let text = text.into();
    let e = Element::new(name, ns);
    if text.is_empty() {
        e
    } else {
        e.with_text(text)
    }
}

/// Rewrite the namespace `from` to `to` on `e` and all its descendants.
pub(crate) fn renamespace(e: &mut Element, from: &str, to: &str) {
    if from == to {
        return;
    }
    if e.ns == from {
        e.ns = to.to_owned();
    }
    for n in &mut e.children {
        if let Node::Element(c) = n {
            renamespace(c, from, to);
        }
    }
}
