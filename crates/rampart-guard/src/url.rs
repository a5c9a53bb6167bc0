//! URLs in chat: extraction from free text, parsing, normalization and lure classification.
//!
//! Everything here works on untrusted input and never panics: malformed URLs are skipped (by
//! [`extract`]) or refused (by [`Url::parse`] returning `None`).
//!
//! - [`extract`] finds `http://`, `https://`, `ftp://` and bare `www.` links in text, the way
//!   chat clients linkify them, and strips trailing punctuation (`see http://x.org/a).`).
//! - [`Url::parse`] resolves what a browser would connect to: userinfo is dropped (the host of
//!   `http://microsoft.com@evil.example/` is `evil.example`), percent-encoded hosts are decoded,
//!   `xn--` labels are decoded to Unicode, IPv4 hosts are read the WHATWG way (so
//!   `http://3232235777/`, `http://0xC0A80101/` and `http://0300.0250.1.1/` are all
//!   `192.168.1.1`), default ports are dropped.
//! - [`Url::key`] is the normalized, scheme-less form used for blocklist matching and as the
//!   behavioural fingerprint of a link: lowercased host, unreserved percent-escapes decoded,
//!   dot segments and duplicate slashes removed, trailing slash and fragment dropped, tracking
//!   query parameters (`utm_*`, `fbclid`, ...) dropped.
//! - [`Classifier`] decides whether a link is a lure (executable download, IP literal,
//!   lookalike of a brand or company domain, URL shortener).

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The most bytes of one URL we look at; longer candidates are cut here (still classified).
pub const MAX_URL_LEN: usize = 4096;

/// Find the links in free text, in order of appearance, as sub-slices of `text`.
///
/// Recognized: `http://`, `https://` and `ftp://` (any letter case) and bare `www.` at the
/// start of a word. A link ends at whitespace, a control character or one of `<>"`{}|\^`;
/// trailing `.,;:!?'"*` and unbalanced closing brackets are not part of it.
pub fn extract(text: &str) -> Extract<'_> {
    Extract { text, pos: 0 }
}

/// Iterator returned by [`extract`].
pub struct Extract<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Extract<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            let rel = memchr::memchr3(b':', b'w', b'W', &bytes[self.pos..])?;
            let i = self.pos + rel;
            self.pos = i + 1;
            let start = if bytes[i] == b':' {
                if !bytes[i..].starts_with(b"://") {
                    continue;
                }
                // Walk back over the scheme.
                let mut s = i;
                while s > 0 && bytes[s - 1].is_ascii_alphanumeric() {
                    s -= 1;
                }
                let scheme = &bytes[s..i];
                // The scheme may be glued to a preceding word ("seehttp://"): take the longest
                // known scheme that ends here.
                let schemes: [&[u8]; 3] = [b"https", b"http", b"ftp"];
                let known = schemes
                    .iter()
                    .find(|k| {
                        scheme.len() >= k.len()
                            && scheme[scheme.len() - k.len()..].eq_ignore_ascii_case(k)
                    })
                    .map(|k| i - k.len());
                match known {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                // "www." at the start of a word.
                if bytes.len() < i + 4 || !bytes[i..i + 4].eq_ignore_ascii_case(b"www.") {
                    continue;
                }
                if i > 0
                    && (bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] >= 0x80
                        || matches!(bytes[i - 1], b'.' | b'/' | b'@' | b'-' | b'_'))
                {
                    continue;
                }
                i
            };
            let end = url_end(self.text, start);
            self.pos = end.max(i + 1);
            let candidate = trim_trailing(&self.text[start..end]);
            // Something must follow the scheme or "www.".
            let min = if candidate
                .as_bytes()
                .first()
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'w'))
                && !candidate.contains("://")
            {
                5
            } else {
                candidate.find("://").map_or(usize::MAX, |p| p + 4)
            };
            if candidate.len() >= min {
                return Some(candidate);
            }
        }
        None
    }
}

/// Byte index where a URL starting at `start` ends (exclusive).
fn url_end(text: &str, start: usize) -> usize {
    let mut end = start;
    for (off, c) in text[start..].char_indices() {
        if off >= MAX_URL_LEN {
            break;
        }
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '"' | '`' | '{' | '}' | '|' | '\\' | '^')
            || matches!(
                c,
                '\u{200B}'
                    ..='\u{200D}'
                        | '\u{2060}'
                        | '\u{FEFF}'
                        | '\u{3000}'
                        | '。'
                        | '！'
                        | '？'
                        | '「'
                        | '」'
                        | '『'
                        | '』'
                        | '（'
                        | '）'
                        | '，'
                        | '、'
            )
        {
            break;
        }
        end = start + off + c.len_utf8();
    }
    end
}

/// Strip trailing punctuation and unbalanced closing brackets.
fn trim_trailing(mut s: &str) -> &str {
    loop {
        let Some(last) = s.chars().next_back() else {
            return s;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '*' | '…' | '。' | '！' | '？'
            | '»' | '”' | '’' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            _ => false,
        };
        if !strip {
            return s;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

/// A URL's host, as a browser would resolve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A domain name: lowercase, Unicode (`xn--` labels decoded), no trailing dot.
    Domain(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Host {
    /// The host as text (IPv6 in brackets).
    pub fn to_text(&self) -> String {
        match self {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(a) => a.to_string(),
            Host::Ipv6(a) => format!("[{a}]"),
        }
    }
}

/// A parsed, normalized URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Lowercase scheme (`http`, `https`, `ftp`, ...).
    pub scheme: String,
    pub host: Host,
    /// `None` for the scheme's default port.
    pub port: Option<u16>,
    /// Normalized path, starting with `/`, without trailing slash (except `/` itself).
    pub path: String,
    /// Normalized query without tracking parameters; `None` if nothing is left.
    pub query: Option<String>,
    /// The authority had a userinfo part (`user@host`), a classic way to disguise the host.
    pub had_userinfo: bool,
    /// An IPv4 host written in a form other than the four-decimal dotted quad (decimal,
    /// hex, octal or short forms): only ever used to disguise an address.
    pub obfuscated_ip: bool,
    /// `xn--` labels that are not valid punycode.
    pub bad_punycode: bool,
}

/// Query parameters that only track clicks; dropped from the normalized form so the same
/// link shared with different trackers still compares equal.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "ref_src",
    "ref_url",
    "spm",
    "si",
    "trk",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "rb_clickid",
    "s_cid",
    "twclid",
    "ttclid",
    "li_fat_id",
];

impl Url {
    /// Parse an absolute URL (as found by [`extract`], or from an `href`/`<url/>`). A link
    /// starting with `www.` is read as `http://www.`. `None` if it has no usable host.
    pub fn parse(raw: &str) -> Option<Url> {
        let raw = raw.trim();
        let raw = &raw[..floor_char_boundary(raw, MAX_URL_LEN)];
        let (scheme, rest) = match raw.find("://") {
            Some(p)
                if p > 0
                    && raw[..p]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
            {
                (raw[..p].to_ascii_lowercase(), &raw[p + 3..])
            }
            _ if raw.len() > 4 && raw.as_bytes()[..4].eq_ignore_ascii_case(b"www.") => {
                ("http".to_owned(), raw)
            }
            _ => return None,
        };
        // Browsers treat '\' like '/' in special schemes.
        let auth_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        let after = &rest[auth_end..];
        let (had_userinfo, hostport) = match authority.rfind('@') {
            Some(p) => (true, &authority[p + 1..]),
            None => (false, authority),
        };
        let (host_raw, port_raw) = split_host_port(hostport)?;
        let port = match port_raw {
            None | Some("") => None,
            Some(p) => {
                let p: u16 = p.parse().ok()?;
                let default = match scheme.as_str() {
                    "http" => Some(80),
                    "https" => Some(443),
                    "ftp" => Some(21),
                    _ => None,
                };
                if default == Some(p) { None } else { Some(p) }
            }
        };
        let (host, obfuscated_ip, bad_punycode) = parse_host(host_raw)?;

        let (path_raw, query_raw) = {
            let frag = after.find('#').unwrap_or(after.len());
            let after = &after[..frag];
            match after.find('?') {
                Some(q) => (&after[..q], Some(&after[q + 1..])),
                None => (after, None),
            }
        };
        let path = normalize_path(path_raw);
        let query = query_raw.and_then(normalize_query);
        Some(Url {
            scheme,
            host,
            port,
            path,
            query,
            had_userinfo,
            obfuscated_ip,
            bad_punycode,
        })
    }

    /// The normalized, scheme-less form: `host[:port]/path[?query]`, e.g.
    /// `example.org/a/b?id=1`. Used for exact blocklist matches and as a behavioural key.
    pub fn key(&self) -> String {
        let mut s = self.host.to_text();
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s.push_str(&self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The domain name, if the host is one.
    pub fn domain(&self) -> Option<&str> {
        match &self.host {
            Host::Domain(d) => Some(d),
            _ => None,
        }
    }

    /// Names of files this URL would download, fully percent-decoded and lowercased: the
    /// last path segment, and query values that look like a file name (`?file=setup.exe`).
    pub fn file_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(seg) = self.path.rsplit('/').next()
            && seg.contains('.')
        {
            out.push(clean_file_name(&percent_decode_all(seg)));
        }
        if let Some(q) = &self.query {
            for pair in q.split('&') {
                if let Some((_, v)) = pair.split_once('=') {
                    let v = percent_decode_all(&v.replace('+', " "));
                    let last = v.rsplit(['/', '\\']).next().unwrap_or("");
                    if last.contains('.') && last.len() <= 255 {
                        out.push(clean_file_name(last));
                    }
                }
            }
        }
        out
    }
}

/// Lowercase a file name and drop what Windows ignores at its end (dots, spaces).
fn clean_file_name(name: &str) -> String {
    name.trim_end_matches(['.', ' ', '\0']).to_lowercase()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Split `host[:port]`, `[v6][:port]`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &s[..close + 2];
        let tail = &rest[close + 1..];
        return match tail.strip_prefix(':') {
            Some(p) => Some((host, Some(p))),
            None if tail.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rfind(':') {
        Some(p) => Some((&s[..p], Some(&s[p + 1..]))),
        None => Some((s, None)),
    }
}

/// Parse a host: `(host, obfuscated_ip, bad_punycode)`.
fn parse_host(raw: &str) -> Option<(Host, bool, bool)> {
    if raw.is_empty() {
        return None;
    }
    if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let inner = inner.split('%').next().unwrap_or(inner);
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| (Host::Ipv6(a), false, false));
    }
    let decoded = if raw.contains('%') {
        percent_decode_all(raw)
    } else {
        raw.to_owned()
    };
    // IDNA full stops.
    let mut host: String = if decoded.is_ascii() {
        decoded.to_ascii_lowercase()
    } else {
        decoded
            .chars()
            .map(|c| {
                if matches!(c, '。' | '．' | '｡') {
                    '.'
                } else {
                    c
                }
            })
            .flat_map(char::to_lowercase)
            .collect()
    };
    while host.ends_with('.') {
        host.pop();
    }
    if host.is_empty() || host.len() > 253 * 4 {
        return None;
    }
    if host.bytes().any(|b| {
        b <= b' '
            || matches!(
                b,
                b'/' | b'\\' | b'@' | b'[' | b']' | b'<' | b'>' | b'^' | b'|' | b'%'
            )
    }) {
        return None;
    }
    if let Some((addr, canonical)) = parse_ipv4(&host) {
        return Some((Host::Ipv4(addr), !canonical, false));
    }
    let mut bad_punycode = false;
    if host.contains("xn--") {
        let mut out = String::with_capacity(host.len());
        for (i, label) in host.split('.').enumerate() {
            if i > 0 {
                out.push('.');
            }
            match label.strip_prefix("xn--") {
                Some(p) => match punycode_decode(p) {
                    Some(u) => out.extend(u.chars().flat_map(char::to_lowercase)),
                    None => {
                        bad_punycode = true;
                        out.push_str(label);
                    }
                },
                None => out.push_str(label),
            }
        }
        host = out;
    }
    Some((Host::Domain(host), false, bad_punycode))
}

/// WHATWG IPv4 parsing: `Some((addr, is_plain_dotted_quad))` if every label is a number
/// (decimal, `0x` hex or `0`-prefixed octal), with up to four labels, the last one filling
/// the remaining bytes.
pub fn parse_ipv4(host: &str) -> Option<(Ipv4Addr, bool)> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut canonical = parts.len() == 4;
    let mut nums = [0u64; 4];
    for (i, p) in parts.iter().enumerate() {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if radix != 10 {
            canonical = false;
        }
        let n = if digits.is_empty() {
            0
        } else {
            if digits.len() > 16 || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()?
        };
        nums[i] = n;
    }
    let n = parts.len();
    for &v in &nums[..n - 1] {
        if v > 255 {
            return None;
        }
    }
    let last_max: u64 = 1u64 << (8 * (5 - n as u32));
    if nums[n - 1] >= last_max {
        return None;
    }
    let mut value: u64 = nums[n - 1];
    for (i, &v) in nums[..n - 1].iter().enumerate() {
        value += v << (8 * (3 - i as u32));
    }
    let value = u32::try_from(value).ok()?;
    Some((Ipv4Addr::from(value), canonical))
}

/// Decode RFC 3492 punycode (the part after `xn--`). `None` if invalid or longer than a DNS
/// label allows.
pub fn punycode_decode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    if !input.is_ascii() || input.len() > 63 {
        return None;
    }
    let (basic, ext) = match input.rfind('-') {
        Some(p) => (&input[..p], &input[p + 1..]),
        None => ("", input),
    };
    let mut out: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (128u32, 0u32, 72u32);
    let adapt = |mut delta: u32, points: u32, first: bool| {
        delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    };
    let mut bytes = ext.bytes().peekable();
    while bytes.peek().is_some() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        loop {
            let b = bytes.next()?;
            let digit = match b {
                b'a'..=b'z' => u32::from(b - b'a'),
                b'A'..=b'Z' => u32::from(b - b'A'),
                b'0'..=b'9' => u32::from(b - b'0') + 26,
                _ => return None,
            };
            i = i.checked_add(digit.checked_mul(w)?)?;
            let t = if k <= bias {
                TMIN
            } else if k >= bias + TMAX {
                TMAX
            } else {
                k - bias
            };
            if digit < t {
                break;
            }
            w = w.checked_mul(BASE - t)?;
            k += BASE;
        }
        let len = u32::try_from(out.len()).ok()? + 1;
        bias = adapt(i - old_i, len, old_i == 0);
        n = n.checked_add(i / len)?;
        i %= len;
        out.insert(i as usize, char::from_u32(n)?);
        i += 1;
        if out.len() > 63 {
            return None;
        }
    }
    Some(out.into_iter().collect())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode every `%XX` escape (invalid UTF-8 replaced); malformed escapes stay as they are.
pub fn percent_decode_all(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decode escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`), uppercase the hex of the
/// others.
fn normalize_escapes(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push_str(&s[start..i]);
            let v = h * 16 + l;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(b[i + 1].to_ascii_uppercase()));
                out.push(char::from(b[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[start..]);
}

/// Normalize a path: unreserved escapes decoded, `\` read as `/`, dot segments and empty
/// segments removed, no trailing slash; always starts with `/`.
fn normalize_path(raw: &str) -> String {
    let mut decoded = String::with_capacity(raw.len());
    normalize_escapes(raw, &mut decoded);
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Normalize a query: tracking parameters dropped, unreserved escapes decoded.
fn normalize_query(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for pair in raw.split('&') {
        if pair.is_empty() {
            continue;
        }
        let name = pair.split('=').next().unwrap_or("");
        let lname = name.to_ascii_lowercase();
        if lname.starts_with("utm_") || TRACKING_PARAMS.contains(&lname.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        normalize_escapes(pair, &mut out);
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Why a link is a lure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lure {
    /// The link downloads an executable or script (the extension, e.g. `.scr`), possibly
    /// behind a harmless-looking one (`photo.jpg.exe`) or inside an archive named after one
    /// (`invoice.pdf.exe.zip`).
    Executable {
        ext: String,
        file: String,
        double: bool,
    },
    /// The host is an IP address (`obfuscated`: written as decimal, hex, octal or short form).
    IpLiteral { obfuscated: bool },
    /// The host imitates `target` (a brand or company domain), or mixes scripts.
    Lookalike {
        target: Option<String>,
        how: &'static str,
    },
    /// A URL shortener hides the destination.
    Shortener,
}

impl Lure {
    /// Stable rule id (`lure.executable`, ...).
    pub fn rule(&self) -> &'static str {
        match self {
            Lure::Executable { .. } => "lure.executable",
            Lure::IpLiteral { .. } => "lure.ip_literal",
            Lure::Lookalike { .. } => "lure.lookalike",
            Lure::Shortener => "lure.shortener",
        }
    }

    /// Text for the sender.
    pub fn reason(&self) -> String {
        match self {
            Lure::Executable {
                ext, double: true, ..
            } => {
                format!(
                    "blocked: link to an executable file disguised with a double extension (.{ext})"
                )
            }
            Lure::Executable { ext, .. } => format!("blocked: link to an executable file (.{ext})"),
            Lure::IpLiteral { obfuscated: true } => {
                "blocked: link to an obfuscated IP address".to_owned()
            }
            Lure::IpLiteral { obfuscated: false } => {
                "blocked: link to a bare IP address".to_owned()
            }
            Lure::Lookalike {
                target: Some(t), ..
            } => format!("blocked: link to a site imitating {t}"),
            Lure::Lookalike { target: None, how } => {
                format!("blocked: link to a deceptive domain ({how})")
            }
            Lure::Shortener => "blocked: shortened link hides its destination".to_owned(),
        }
    }
}

/// Settings of a [`Classifier`] (see `GuardConfig::lure` for the defaults).
#[derive(Clone, Debug, Default)]
pub struct ClassifierSettings {
    pub blocked_extensions: Vec<String>,
    pub archive_extensions: Vec<String>,
    pub block_ip_literals: bool,
    pub allow_private_ip_literals: bool,
    pub block_shorteners: bool,
    pub shorteners: Vec<String>,
    pub check_lookalikes: bool,
    /// Domains imitated by phishers (brands) — and the company's own.
    pub protected_domains: Vec<String>,
    /// Company domains: links to these (and their subdomains) are never lures.
    pub trusted_domains: Vec<String>,
}

/// Extensions that look harmless; one right before an executable extension makes a double
/// extension (`photo.jpg.exe`).
const DECOY_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "bmp", "webp", "heic", "pdf", "doc", "docx", "xls", "xlsx", "ppt",
    "pptx", "txt", "rtf", "mp3", "mp4", "avi", "mov", "wav", "zip", "csv", "odt", "html", "htm",
];

/// Lure classification, precomputed from settings. Cheap to share.
#[derive(Clone, Debug)]
pub struct Classifier {
    blocked: HashSet<String>,
    archives: HashSet<String>,
    shorteners: HashSet<String>,
    settings: ClassifierSettings,
    /// (domain, first label, skeleton of first label)
    protected: Vec<(String, String, String)>,
    trusted: Vec<String>,
}

fn clean_domain(d: &str) -> String {
    let d = d.trim().trim_end_matches('.').to_lowercase();
    match parse_host(&d) {
        Some((Host::Domain(h), _, _)) => h,
        _ => d,
    }
}

/// True if `host` is `domain` or a subdomain of it.
pub fn host_in_domain(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

impl Classifier {
    pub fn new(settings: ClassifierSettings) -> Self {
        let norm_ext = |v: &Vec<String>| {
            v.iter()
                .map(|e| e.trim().trim_start_matches('.').to_lowercase())
                .filter(|e| !e.is_empty())
                .collect::<HashSet<_>>()
        };
        let trusted: Vec<String> = settings
            .trusted_domains
            .iter()
            .map(|d| clean_domain(d))
            .filter(|d| !d.is_empty())
            .collect();
        let mut protected = Vec::new();
        for d in settings
            .protected_domains
            .iter()
            .chain(settings.trusted_domains.iter())
        {
            let d = clean_domain(d);
            let Some(first) = d.split('.').next().map(str::to_owned) else {
                continue;
            };
            if first.is_empty() || d == first {
                continue;
            }
            let sk = skeleton(&first);
            if !protected
                .iter()
                .any(|(pd, _, _): &(String, String, String)| *pd == d)
            {
                protected.push((d, first, sk));
            }
        }
        Classifier {
            blocked: norm_ext(&settings.blocked_extensions),
            archives: norm_ext(&settings.archive_extensions),
            shorteners: settings
                .shorteners
                .iter()
                .map(|d| clean_domain(d))
                .collect(),
            protected,
            trusted,
            settings,
        }
    }

    /// True if the URL's host is a trusted (company) domain or a subdomain of one.
    pub fn is_trusted(&self, url: &Url) -> bool {
        url.domain()
            .is_some_and(|d| self.trusted.iter().any(|t| host_in_domain(d, t)))
    }

    /// The executable extension a file name ends with (directly, after a decoy extension, or
    /// inside an archive named after one): `(ext, double)`.
    pub fn executable_name(&self, name: &str) -> Option<(String, bool)> {
        let name = clean_file_name(name);
        if !name.contains('.') {
            return None;
        }
        let mut exts = name.rsplit('.');
        let last = exts.next()?;
        let prev = exts.next();
        // The stem must exist: ".exe" alone is no file name we can judge, treat it as one.
        if self.blocked.contains(last) {
            let double = prev.is_some_and(|p| DECOY_EXTENSIONS.contains(&p))
                && name.matches('.').count() >= 2;
            return Some((last.to_owned(), double));
        }
        if self.archives.contains(last)
            && let Some(p) = prev
            && self.blocked.contains(p)
            && name.matches('.').count() >= 2
        {
            return Some((p.to_owned(), true));
        }
        None
    }

    /// Whether (and why) a link is a lure. Trusted domains never are.
    pub fn classify(&self, url: &Url) -> Option<Lure> {
        if self.is_trusted(url) {
            return None;
        }
        for f in url.file_names() {
            if let Some((ext, double)) = self.executable_name(&f) {
                return Some(Lure::Executable {
                    ext,
                    file: f,
                    double,
                });
            }
        }
        match &url.host {
            Host::Ipv4(a) => {
                if self.settings.block_ip_literals
                    && (url.obfuscated_ip
                        || !(self.settings.allow_private_ip_literals && is_private_v4(a)))
                {
                    return Some(Lure::IpLiteral {
                        obfuscated: url.obfuscated_ip,
                    });
                }
                None
            }
            Host::Ipv6(a) => {
                let private = a.is_loopback()
                    || (a.segments()[0] & 0xfe00) == 0xfc00
                    || (a.segments()[0] & 0xffc0) == 0xfe80;
                if self.settings.block_ip_literals
                    && !(self.settings.allow_private_ip_literals && private)
                {
                    return Some(Lure::IpLiteral { obfuscated: false });
                }
                None
            }
            Host::Domain(d) => {
                if self.settings.block_shorteners
                    && self.shorteners.iter().any(|s| host_in_domain(d, s))
                {
                    return Some(Lure::Shortener);
                }
                if self.settings.check_lookalikes {
                    if url.bad_punycode {
                        return Some(Lure::Lookalike {
                            target: None,
                            how: "malformed punycode",
                        });
                    }
                    return self.lookalike(d);
                }
                None
            }
        }
    }

    /// Lookalike analysis of a domain name.
    pub fn lookalike(&self, host: &str) -> Option<Lure> {
        if self
            .protected
            .iter()
            .any(|(d, _, _)| host_in_domain(host, d))
        {
            return None;
        }
        let labels: Vec<&str> = host.split('.').collect();
        let n = labels.len();
        let registrable = registrable_index(&labels);
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() {
                continue;
            }
            if mixed_script(label) {
                return Some(Lure::Lookalike {
                    target: None,
                    how: "mixed scripts",
                });
            }
            // The TLD is never compared.
            if i + 1 == n {
                break;
            }
            let sk = skeleton(label);
            for (domain, first, psk) in &self.protected {
                if *label == first.as_str() {
                    // The genuine brand name in someone else's domain (`contoso.sharepoint.com`)
                    // is common and legitimate.
                    continue;
                }
                // One-edit typos only in the registrable label: brand-like words in
                // subdomains ("offices.example.com") are too common.
                if sk == *psk
                    || (Some(i) == registrable
                        && first.chars().count() >= 6
                        && label.is_ascii()
                        && damerau_1(&sk, psk))
                {
                    return Some(Lure::Lookalike {
                        target: Some(domain.clone()),
                        how: "lookalike",
                    });
                }
            }
        }
        None
    }
}

/// Index of the registrable label (the one before the public suffix), approximated without a
/// public-suffix list: before the TLD, or before a short second level under a two-letter TLD
/// (`example.co.uk`).
fn registrable_index(labels: &[&str]) -> Option<usize> {
    let n = labels.len();
    if n < 2 {
        return None;
    }
    let sld = labels[n - 2];
    if n >= 3
        && labels[n - 1].len() == 2
        && matches!(
            sld,
            "co" | "com" | "net" | "org" | "gov" | "ac" | "edu" | "ne" | "or" | "go"
        )
    {
        return Some(n - 3);
    }
    Some(n - 2)
}

fn is_private_v4(a: &Ipv4Addr) -> bool {
    a.is_private() || a.is_loopback() || a.is_link_local()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Common,
    Latin,
    Cyrillic,
    Greek,
    Other,
}

fn script(c: char) -> Script {
    match c {
        '0'..='9' | '-' | '_' => Script::Common,
        'a'..='z'
        | 'A'..='Z'
        | '\u{00C0}'..='\u{024F}'
        | '\u{1E00}'..='\u{1EFF}'
        | '\u{FF41}'..='\u{FF5A}' => Script::Latin,
        '\u{0400}'..='\u{052F}' => Script::Cyrillic,
        '\u{0370}'..='\u{03FF}' => Script::Greek,
        _ if c.is_ascii() => Script::Common,
        _ => Script::Other,
    }
}

/// True if a label mixes Latin, Cyrillic and Greek letters (`pаypal` with a Cyrillic `а`).
pub fn mixed_script(label: &str) -> bool {
    if label.is_ascii() {
        return false;
    }
    let mut seen: Option<Script> = None;
    for c in label.chars() {
        let s = script(c);
        if matches!(s, Script::Common | Script::Other) {
            continue;
        }
        match seen {
            None => seen = Some(s),
            Some(p) if p != s => return true,
            _ => {}
        }
    }
    false
}

/// Map one character to the Latin letter(s) it is confused with.
fn confusable(c: char) -> Option<char> {
    Some(match c {
        // Digits used as letters.
        '0' => 'o',
        '1' | 'i' | '|' | 'ı' | 'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ł' | 'ӏ' | 'і' | 'ї' | 'ι' => {
            'l'
        }
        '3' => 'e',
        '5' => 's',
        // Cyrillic.
        'а' | 'α' | 'ɑ' | 'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'е' | 'ё' | 'ε' | 'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'о' | 'ο' | 'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'с' | 'ç' | 'ć' | 'č' | 'ϲ' => 'c',
        'у' | 'ý' | 'ÿ' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'ѕ' | 'ś' | 'š' | 'ş' => 's',
        'ј' | 'ȷ' => 'j',
        'ԁ' | 'đ' | 'ď' => 'd',
        'һ' => 'h',
        'ԛ' => 'q',
        'ԝ' | 'ѡ' => 'w',
        'к' | 'κ' => 'k',
        'ν' => 'v',
        'υ' | 'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ɡ' | 'ğ' => 'g',
        'ñ' | 'ń' | 'ň' | 'п' | 'η' => 'n',
        'ź' | 'ż' | 'ž' => 'z',
        'ř' => 'r',
        'ť' | 'ţ' | 'т' | 'τ' => 't',
        'в' => 'b',
        'м' => 'm',
        '\u{FF41}'..='\u{FF5A}' => char::from_u32(c as u32 - 0xFF41 + 'a' as u32)?,
        '\u{FF10}'..='\u{FF19}' => {
            return confusable(char::from_u32(c as u32 - 0xFF10 + '0' as u32)?);
        }
        _ => return None,
    })
}

/// The "skeleton" of a label: confusable characters mapped to the Latin letter they imitate,
/// `rn`→`m`, `vv`→`w`, hyphens dropped. Two labels with the same skeleton look alike.
pub fn skeleton(label: &str) -> String {
    let mut s = String::with_capacity(label.len());
    for c in label.chars() {
        if c == '-' || c == '_' {
            continue;
        }
        s.push(confusable(c).unwrap_or(c));
    }
    if s.contains("rn") {
        s = s.replace("rn", "m");
    }
    if s.contains("vv") {
        s = s.replace("vv", "w");
    }
    s
}

/// True if `a` and `b` differ by exactly one edit (insertion, deletion, substitution or
/// transposition of adjacent characters).
fn damerau_1(a: &str, b: &str) -> bool {
    // Cheap length check before looking at characters.
    if a.len().abs_diff(b.len()) > 4 {
        return false;
    }
    if a.is_ascii() && b.is_ascii() {
        return damerau_1_slices(a.as_bytes(), b.as_bytes());
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    damerau_1_slices(&a, &b)
}

/// [`damerau_1`] on bytes or characters.
fn damerau_1_slices<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    if a == b {
        return false;
    }
    let (la, lb) = (a.len(), b.len());
    if la.abs_diff(lb) > 1 {
        return false;
    }
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if la == lb {
        let suf = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        // substitution
        if pre + suf + 1 >= la {
            return true;
        }
        // transposition
        pre + 2 <= la
            && a[pre] == b[pre + 1]
            && a[pre + 1] == b[pre]
            && a[pre + 2..] == b[pre + 2..]
    } else {
        let (long, short) = if la > lb { (a, b) } else { (b, a) };
        long[pre + 1..] == short[pre..]
    }
}

#[cfg(test)]
mod tests;
