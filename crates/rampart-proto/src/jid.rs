//! JIDs (RFC 7622 syntax) with RFC 6122-compatible stringprep preparation.
//!
//! A [`Jid`] is one type for bare (`node@domain`, `domain`) and full (`…/resource`) addresses.
//! It stores the normalized full string in an `Arc<str>` plus offsets, so cloning is cheap and
//! equality, hashing and ordering are plain string operations on the normalized form.
//!
//! Preparation: nodeprep for the localpart, nameprep for the domainpart (lowercased, one
//! trailing dot stripped, IPv4 and bracketed IPv6 literals accepted) and resourceprep for the
//! resourcepart. Each part must be 1..=1023 bytes after preparation. Pure-ASCII input that no
//! profile would change skips stringprep entirely.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::Arc;

/// Maximum length of each JID part in bytes, after preparation (RFC 7622 §3.1).
pub const MAX_PART_LEN: usize = 1023;

/// Raw input per part beyond which we refuse without running stringprep (bounds the work a
/// peer can make us do; preparation never shrinks realistic input by a factor of four).
const MAX_RAW_PART_LEN: usize = 4 * MAX_PART_LEN;

/// Why a string is not a valid JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// `@domain`: an `@` with nothing before it.
    #[error("empty localpart")]
    EmptyNode,
    /// No domainpart (empty string, `user@`, `user@/res`, `.`).
    #[error("empty domainpart")]
    EmptyDomain,
    /// `domain/`: a `/` with nothing after it.
    #[error("empty resourcepart")]
    EmptyResource,
    /// Localpart longer than 1023 bytes.
    #[error("localpart longer than 1023 bytes")]
    NodeTooLong,
    /// Domainpart longer than 1023 bytes.
    #[error("domainpart longer than 1023 bytes")]
    DomainTooLong,
    /// Resourcepart longer than 1023 bytes.
    #[error("resourcepart longer than 1023 bytes")]
    ResourceTooLong,
    /// Localpart refused by nodeprep (forbidden character, bidi rule, unassigned code point).
    #[error("localpart not allowed by nodeprep")]
    NodePrep,
    /// Domainpart refused by nameprep.
    #[error("domainpart not allowed by nameprep")]
    NamePrep,
    /// Resourcepart refused by resourceprep.
    #[error("resourcepart not allowed by resourceprep")]
    ResourcePrep,
    /// Domainpart with characters or labels not allowed in a host name.
    #[error("invalid domainpart")]
    InvalidDomain,
    /// A bracketed domainpart that is not an IPv6 address.
    #[error("invalid IP literal")]
    InvalidIpLiteral,
}

/// An XMPP address, normalized. See the [module documentation](self).
#[derive(Clone)]
pub struct Jid {
    full: Arc<str>,
    /// Length of the localpart; 0 when there is none (a localpart is never empty).
    node_len: u16,
    /// Byte offset where the domainpart ends (== full.len() when there is no resource).
    domain_end: u16,
}

fn node_fast_ok(s: &str) -> bool {
    s.bytes().all(|b| {
        b > b' '
            && b < 0x7f
            && !b.is_ascii_uppercase()
            && !matches!(b, b'"' | b'&' | b'\'' | b'/' | b':' | b'<' | b'>' | b'@')
    })
}

fn prep_node(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyNode);
    }
    if s.len() > MAX_RAW_PART_LEN {
        return Err(JidError::NodeTooLong);
    }
    let out = if node_fast_ok(s) {
        Cow::Borrowed(s)
    } else {
        stringprep::nodeprep(s).map_err(|_| JidError::NodePrep)?
    };
    if out.is_empty() {
        return Err(JidError::EmptyNode);
    }
    if out.len() > MAX_PART_LEN {
        return Err(JidError::NodeTooLong);
    }
    Ok(out)
}

fn domain_ascii_ok(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
}

fn prep_domain(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if s.len() > MAX_RAW_PART_LEN {
        return Err(JidError::DomainTooLong);
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(JidError::InvalidIpLiteral)?;
        let addr: Ipv6Addr = inner.parse().map_err(|_| JidError::InvalidIpLiteral)?;
        return Ok(Cow::Owned(format!("[{addr}]")));
    }
    // RFC 3490 §3.1: ideographic full stops separate labels like '.'.
    let mapped: Cow<'_, str> = if s.is_ascii() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.replace(['\u{3002}', '\u{ff0e}', '\u{ff61}'], "."))
    };
    let stripped = mapped.strip_suffix('.').unwrap_or(&mapped);
    if stripped.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    let out: String = if stripped.bytes().all(domain_ascii_ok) {
        if let Cow::Borrowed(b) = mapped {
            // Nothing was mapped: borrow from the input.
            let len = stripped.len();
            return finish_domain(Cow::Borrowed(&b[..len]));
        }
        stripped.to_owned()
    } else {
        stringprep::nameprep(stripped)
            .map_err(|_| JidError::NamePrep)?
            .into_owned()
    };
    finish_domain(Cow::Owned(out))
}

fn finish_domain(d: Cow<'_, str>) -> Result<Cow<'_, str>, JidError> {
    if d.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if d.len() > MAX_PART_LEN {
        return Err(JidError::DomainTooLong);
    }
    if d.bytes().any(|b| b.is_ascii() && !domain_ascii_ok(b)) {
        return Err(JidError::InvalidDomain);
    }
    if d.split('.').any(str::is_empty) {
        return Err(JidError::InvalidDomain);
    }
    Ok(d)
}

fn prep_resource(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if s.len() > MAX_RAW_PART_LEN {
        return Err(JidError::ResourceTooLong);
    }
    let out = if s.bytes().all(|b| (b' '..0x7f).contains(&b)) {
        Cow::Borrowed(s)
    } else {
        stringprep::resourceprep(s).map_err(|_| JidError::ResourcePrep)?
    };
    if out.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if out.len() > MAX_PART_LEN {
        return Err(JidError::ResourceTooLong);
    }
    Ok(out)
}

impl Jid {
    /// Parse and normalize a JID string (RFC 7622 §3.1 splitting rules: the resource starts at
    /// the first `/`; the localpart ends at the first `@` before it).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((r, res)) => (r, Some(res)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((n, d)) => (Some(n), d),
            None => (None, rest),
        };
        if node == Some("") {
            return Err(JidError::EmptyNode);
        }
        if domain.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if resource == Some("") {
            return Err(JidError::EmptyResource);
        }
        Jid::new(node, domain, resource)
    }

    /// Build a JID from its parts, preparing each. `Some("")` parts are errors.
    pub fn new(node: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        let node = node.map(prep_node).transpose()?;
        let domain = prep_domain(domain)?;
        if domain.contains('@') || domain.contains('/') {
            return Err(JidError::InvalidDomain);
        }
        let resource = resource.map(prep_resource).transpose()?;
        Ok(Jid::assemble(node.as_deref(), &domain, resource.as_deref()))
    }

    /// Join already-prepared parts.
    fn assemble(node: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        let len =
            node.map_or(0, |n| n.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        let mut s = String::with_capacity(len);
        if let Some(n) = node {
            s.push_str(n);
            s.push('@');
        }
        s.push_str(domain);
        let domain_end = s.len();
        if let Some(r) = resource {
            s.push('/');
            s.push_str(r);
        }
        // Each part is at most 1023 bytes, so every offset fits in u16.
        Jid {
            full: Arc::from(s),
            node_len: node.map_or(0, str::len) as u16,
            domain_end: domain_end as u16,
        }
    }

    fn domain_start(&self) -> usize {
        if self.node_len == 0 {
            0
        } else {
            self.node_len as usize + 1
        }
    }

    /// The localpart, if any.
    pub fn node(&self) -> Option<&str> {
        (self.node_len > 0).then(|| &self.full[..self.node_len as usize])
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.full[self.domain_start()..self.domain_end as usize]
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        let end = self.domain_end as usize;
        (end < self.full.len()).then(|| &self.full[end + 1..])
    }

    /// True if there is no resource.
    pub fn is_bare(&self) -> bool {
        self.domain_end as usize == self.full.len()
    }

    /// True if there is a resource.
    pub fn is_full(&self) -> bool {
        !self.is_bare()
    }

    /// True for a domain-only JID (no localpart, no resource).
    pub fn is_domain(&self) -> bool {
        self.node_len == 0 && self.is_bare()
    }

    /// This JID without its resource (a cheap clone if already bare).
    pub fn bare(&self) -> Jid {
        if self.is_bare() {
            return self.clone();
        }
        Jid {
            full: Arc::from(self.bare_str()),
            node_len: self.node_len,
            domain_end: self.domain_end,
        }
    }

    /// The domain alone as a JID.
    pub fn domain_jid(&self) -> Jid {
        if self.is_domain() {
            return self.clone();
        }
        let d = self.domain();
        Jid {
            full: Arc::from(d),
            node_len: 0,
            domain_end: d.len() as u16,
        }
    }

    /// The normalized full string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The normalized `node@domain` (or `domain`).
    pub fn bare_str(&self) -> &str {
        &self.full[..self.domain_end as usize]
    }

    /// The bare part of this JID with `resource` (prepared) attached.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        let r = prep_resource(resource)?;
        Ok(Jid::assemble(self.node(), self.domain(), Some(&r)))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({:?})", &*self.full)
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl TryFrom<&str> for Jid {
    type Error = JidError;
    fn try_from(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl From<Jid> for String {
    fn from(j: Jid) -> String {
        j.full.to_string()
    }
}

impl AsRef<str> for Jid {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl PartialEq for Jid {
    fn eq(&self, other: &Jid) -> bool {
        Arc::ptr_eq(&self.full, &other.full) || *self.full == *other.full
    }
}

impl Eq for Jid {}

impl Hash for Jid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Jid {
    fn partial_cmp(&self, other: &Jid) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Jid {
    fn cmp(&self, other: &Jid) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn parts() {
        let a = j("user@example.com/res");
        assert_eq!(a.node(), Some("user"));
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.resource(), Some("res"));
        assert!(a.is_full() && !a.is_bare());
        assert_eq!(a.bare_str(), "user@example.com");
        assert_eq!(a.bare(), j("user@example.com"));
        assert_eq!(a.domain_jid(), j("example.com"));
        assert_eq!(a.as_str(), "user@example.com/res");
        assert_eq!(a.to_string(), "user@example.com/res");

        let d = j("example.com");
        assert_eq!(d.node(), None);
        assert_eq!(d.resource(), None);
        assert!(d.is_bare() && d.is_domain());
        let dr = j("example.com/r");
        assert_eq!(dr.node(), None);
        assert_eq!(dr.domain(), "example.com");
        assert_eq!(dr.resource(), Some("r"));
        assert_eq!(dr.bare(), d);
    }

    #[test]
    fn bare_is_cheap_when_bare() {
        let a = j("user@example.com");
        let b = a.bare();
        assert!(Arc::ptr_eq(&a.full, &b.full));
    }

    #[test]
    fn case_folding() {
        assert_eq!(j("User@Example.COM/Res").as_str(), "user@example.com/Res");
        assert_eq!(j("ÄLICE@EXAMPLE.com").as_str(), "älice@example.com");
        assert_eq!(j("STRASSE@x"), j("strasse@x"));
    }

    #[test]
    fn nfkc_via_profiles() {
        // FULLWIDTH LATIN SMALL LETTER A -> 'a' (NFKC), in every part.
        assert_eq!(j("\u{ff41}@\u{ff41}.com/\u{ff41}").as_str(), "a@a.com/a");
        // Decomposed e + combining acute composes.
        assert_eq!(j("e\u{301}@x").node(), Some("\u{e9}"));
        // Soft hyphen is mapped to nothing.
        assert_eq!(j("ab\u{ad}c@x").node(), Some("abc"));
        // Ideographic full stop separates labels.
        assert_eq!(j("a@example\u{3002}com").domain(), "example.com");
    }

    #[test]
    fn trailing_dot() {
        assert_eq!(j("user@example.com.").as_str(), "user@example.com");
        assert_eq!(j("example.com./r").as_str(), "example.com/r");
        assert_eq!(Jid::parse("example.com.."), Err(JidError::InvalidDomain));
        assert_eq!(Jid::parse("."), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a@."), Err(JidError::EmptyDomain));
    }

    #[test]
    fn domain_labels() {
        assert_eq!(Jid::parse("a..b"), Err(JidError::InvalidDomain));
        assert_eq!(Jid::parse(".a"), Err(JidError::InvalidDomain));
        assert_eq!(Jid::parse("a b"), Err(JidError::InvalidDomain));
        assert_eq!(Jid::parse("a@b@c"), Err(JidError::InvalidDomain));
        assert_eq!(Jid::parse("a:5222"), Err(JidError::InvalidDomain));
        assert!(Jid::parse("_xmpp.example.com").is_ok());
    }

    #[test]
    fn ip_literals() {
        assert_eq!(j("user@192.168.0.1/r").domain(), "192.168.0.1");
        let v6 = j("user@[2001:DB8:0:0::1]/res");
        assert_eq!(v6.domain(), "[2001:db8::1]");
        assert_eq!(v6.resource(), Some("res"));
        assert_eq!(j("[::1]").domain(), "[::1]");
        assert_eq!(Jid::parse("[::1"), Err(JidError::InvalidIpLiteral));
        assert_eq!(Jid::parse("[example.com]"), Err(JidError::InvalidIpLiteral));
        assert_eq!(Jid::parse("[1.2.3.4]"), Err(JidError::InvalidIpLiteral));
    }

    #[test]
    fn empty_parts() {
        assert_eq!(Jid::parse(""), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("@domain"), Err(JidError::EmptyNode));
        assert_eq!(Jid::parse("domain/"), Err(JidError::EmptyResource));
        assert_eq!(Jid::parse("user@"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("user@/res"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("/res"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::new(Some(""), "d", None), Err(JidError::EmptyNode));
        assert_eq!(Jid::new(None, "d", Some("")), Err(JidError::EmptyResource));
        assert_eq!(Jid::new(None, "", None), Err(JidError::EmptyDomain));
        // Only mapped-to-nothing characters: empty after preparation.
        assert!(Jid::parse("\u{ad}@d").is_err());
    }

    #[test]
    fn forbidden_node_chars() {
        for c in ['"', '&', '\'', ':', '<', '>', ' '] {
            let s = format!("a{c}b@example.com");
            assert_eq!(Jid::parse(&s), Err(JidError::NodePrep), "{s:?}");
            assert_eq!(
                Jid::new(Some(&format!("a{c}b")), "example.com", None),
                Err(JidError::NodePrep)
            );
        }
        // '/' and '@' cannot reach the node through parse (they split); check via new().
        assert_eq!(Jid::new(Some("a/b"), "x", None), Err(JidError::NodePrep));
        assert_eq!(Jid::new(Some("a@b"), "x", None), Err(JidError::NodePrep));
        assert_eq!(Jid::parse("a\u{7}b@x"), Err(JidError::NodePrep));
        assert_eq!(Jid::parse("a\u{a0}b@x"), Err(JidError::NodePrep));
        // Unusual but allowed ASCII.
        assert!(Jid::parse("a!b=c?d#e@x").is_ok());
    }

    #[test]
    fn resource_rules() {
        let a = j("u@d/Some Resource/with@and/slash");
        assert_eq!(a.resource(), Some("Some Resource/with@and/slash"));
        assert_eq!(a.node(), Some("u"));
        assert_eq!(j("d/a@b").node(), None);
        assert_eq!(j("d/a@b").resource(), Some("a@b"));
        assert_eq!(Jid::parse("u@d/a\u{0}b"), Err(JidError::ResourcePrep));
        assert_eq!(Jid::parse("u@d/a\u{e000}"), Err(JidError::ResourcePrep));
        let w = j("u@d/x").with_resource("Other").unwrap();
        assert_eq!(w.as_str(), "u@d/Other");
        assert_eq!(j("u@d").with_resource(""), Err(JidError::EmptyResource));
    }

    #[test]
    fn length_limits() {
        let n1023 = "a".repeat(1023);
        let n1024 = "a".repeat(1024);
        assert!(Jid::parse(&format!("{n1023}@d")).is_ok());
        assert_eq!(
            Jid::parse(&format!("{n1024}@d")),
            Err(JidError::NodeTooLong)
        );
        assert!(Jid::parse(&format!("d/{n1023}")).is_ok());
        assert_eq!(
            Jid::parse(&format!("d/{n1024}")),
            Err(JidError::ResourceTooLong)
        );
        let label = "a".repeat(63);
        let mut dom = vec![label.as_str(); 16].join(".");
        dom.truncate(1023);
        assert!(Jid::parse(&dom).is_ok());
        dom.push('b');
        assert_eq!(Jid::parse(&dom), Err(JidError::DomainTooLong));
        let max = Jid::parse(&format!("{n1023}@{}/{n1023}", &dom[..1023])).unwrap();
        assert_eq!(max.resource().map(str::len), Some(1023));
        assert_eq!(max.domain().len(), 1023);
        // Huge input is refused before stringprep.
        assert_eq!(
            Jid::parse(&format!("{}@d", "\u{e9}".repeat(5000))),
            Err(JidError::NodeTooLong)
        );
    }

    #[test]
    fn fast_paths_agree_with_stringprep() {
        for b in 0u8..0x80 {
            let c = b as char;
            let s = format!("a{c}b");
            let fast = prep_node(&s).map(Cow::into_owned);
            let slow = stringprep::nodeprep(&s)
                .map(Cow::into_owned)
                .map_err(|_| JidError::NodePrep);
            assert_eq!(fast, slow, "node {s:?}");
            let fast = prep_resource(&s).map(Cow::into_owned);
            let slow = stringprep::resourceprep(&s)
                .map(Cow::into_owned)
                .map_err(|_| JidError::ResourcePrep);
            assert_eq!(fast, slow, "resource {s:?}");
        }
        assert_eq!(j("Stra\u{df}e@x"), j("strasse@x"));
    }

    #[test]
    fn eq_hash_ord() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(j("A@B"));
        assert!(set.contains(&j("a@b")));
        assert!(j("a@b") < j("b@a"));
        assert_eq!("X@Y/Z".parse::<Jid>().unwrap(), j("x@y/Z"));
        assert_ne!(j("x@y/Z"), j("x@y/z"));
        assert_eq!(format!("{:?}", j("a@b")), "Jid(\"a@b\")");
    }
}
