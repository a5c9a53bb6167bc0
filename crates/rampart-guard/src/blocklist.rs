//! [`BlocklistSet`]: hosts and URLs known to be malicious, from plain lists and URLhaus CSV.
//!
//! Formats accepted:
//! - **Plain lists**: one entry per line; `#` starts a comment (whole line or after
//!   whitespace); blank lines are ignored. An entry is a host (`evil.example`, also
//!   `*.evil.example` and adblock-style `||evil.example^`), a hosts-file line
//!   (`0.0.0.0 evil.example`), or a URL (`http://evil.example/payload`). A host entry blocks
//!   the host and all its subdomains; a URL entry blocks that URL exactly (after
//!   normalization, see [`crate::url::Url::key`]).
//! - **URLhaus CSV** (`csv_recent`/`csv_online` exports): `#` comment lines, then rows
//!   `id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter` with
//!   `"`-quoted fields (`""` escapes a quote). Every row's `url` is blocked exactly. Hosts are
//!   not blocked as a whole: URLhaus lists many compromised legitimate sites.
//!
//! The set is immutable once built; the guard swaps in a new one on reload
//! ([`crate::Guard::set_blocklists`]). The parsers only read text: reading the files is the
//! caller's business.

use std::collections::HashSet;

use crate::url::{Host, Url};

/// Hosts and URLs to block.
#[derive(Clone, Debug, Default)]
pub struct BlocklistSet {
    hosts: HashSet<String>,
    urls: HashSet<String>,
    skipped: usize,
}

/// What matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockMatch {
    /// The URL's host or a parent domain of it.
    Host(String),
    /// The normalized URL.
    Url(String),
}

impl BlocklistSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Host entries plus URL entries.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines that were not comments but could not be read as an entry.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Add a host (and its subdomains).
    pub fn add_host(&mut self, host: &str) -> bool {
        let h = host.trim().trim_start_matches("*.").trim_end_matches('.');
        match Url::parse(&format!("http://{h}/")) {
            // A single label ("intranet") is no Internet host; it is most likely a stray word.
            Some(u) if (h.contains('.') || h.contains(':')) && !h.contains('/') => {
                self.hosts.insert(u.host.to_text());
                true
            }
            _ => {
                self.skipped += 1;
                false
            }
        }
    }

    /// Add an exact URL.
    pub fn add_url(&mut self, url: &str) -> bool {
        match Url::parse(url) {
            Some(u) => {
                self.urls.insert(u.key());
                true
            }
            None => {
                self.skipped += 1;
                false
            }
        }
    }

    /// Add the entries of a plain list; returns how many were added.
    pub fn add_plain(&mut self, text: &str) -> usize {
        let mut added = 0;
        for line in text.lines() {
            let line = match line.find('#') {
                // A '#' inside a URL (fragment) is not a comment: only at the start or after
                // whitespace.
                Some(0) => continue,
                Some(p) if line[..p].ends_with(char::is_whitespace) => &line[..p],
                _ => line,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('!') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let entries: &[&str] = match fields.as_slice() {
                [one] => std::slice::from_ref(one),
                // hosts-file format: "0.0.0.0 evil.example [more.example ...]"
                [ip, hosts @ ..] if ip.parse::<std::net::IpAddr>().is_ok() => hosts,
                _ => {
                    self.skipped += 1;
                    continue;
                }
            };
            for entry in entries {
                let entry = entry.strip_prefix("||").unwrap_or(entry);
                let entry = entry.strip_suffix('^').unwrap_or(entry);
                if matches!(
                    entry,
                    "localhost" | "localhost.localdomain" | "local" | "broadcasthost" | "0.0.0.0"
                ) {
                    continue;
                }
                let ok = if entry.contains("://") {
                    self.add_url(entry)
                } else {
                    self.add_host(entry)
                };
                added += usize::from(ok);
            }
        }
        added
    }

    /// Add the URLs of a URLhaus CSV export; returns how many were added.
    pub fn add_urlhaus_csv(&mut self, text: &str) -> usize {
        let mut added = 0;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields = parse_csv_line(line);
            match fields.get(2) {
                Some(url) if url.contains("://") => {
                    added += usize::from(self.add_url(url));
                }
                _ => self.skipped += 1,
            }
        }
        added
    }

    /// Merge another set into this one.
    pub fn extend(&mut self, other: BlocklistSet) {
        self.hosts.extend(other.hosts);
        self.urls.extend(other.urls);
        self.skipped += other.skipped;
    }

    /// The entry a URL matches, if any: its exact normalized form, or its host or a parent
    /// domain of it.
    pub fn check(&self, url: &Url) -> Option<BlockMatch> {
        if self.is_empty() {
            return None;
        }
        if !self.urls.is_empty() {
            let key = url.key();
            if self.urls.contains(&key) {
                return Some(BlockMatch::Url(key));
            }
        }
        match &url.host {
            Host::Domain(d) => {
                let mut h: &str = d;
                loop {
                    if self.hosts.contains(h) {
                        return Some(BlockMatch::Host(h.to_owned()));
                    }
                    match h.find('.') {
                        Some(p) => h = &h[p + 1..],
                        None => return None,
                    }
                }
            }
            other => {
                let t = other.to_text();
                self.hosts.contains(&t).then_some(BlockMatch::Host(t))
            }
        }
    }
}

/// Split one CSV line (RFC 4180 quoting; no embedded newlines, as URLhaus writes none).
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect(s)
    }

    #[test]
    fn plain_list_hosts_urls_and_comments() {
        let mut b = BlocklistSet::new();
        let n = b.add_plain(
            "# comment\n\nevil.example\n*.bad.example # trailing comment\n0.0.0.0 hosts.example\n127.0.0.1 localhost\n||ads.example^\nhttp://Mixed.Example/Path/%7Euser/x.bin?utm_source=a\n1.2.3.4\nnot a host/\n",
        );
        assert_eq!(n, 6);
        assert_eq!(b.skipped(), 1);
        assert_eq!(
            b.check(&url("https://evil.example/")),
            Some(BlockMatch::Host("evil.example".into()))
        );
        assert_eq!(
            b.check(&url("http://a.b.EVIL.example./x")),
            Some(BlockMatch::Host("evil.example".into()))
        );
        assert!(b.check(&url("http://notevil.example/")).is_none());
        assert!(b.check(&url("http://x.bad.example/")).is_some());
        assert!(b.check(&url("http://hosts.example/")).is_some());
        assert!(b.check(&url("http://ads.example/")).is_some());
        assert!(b.check(&url("http://localhost/")).is_none());
        assert!(b.check(&url("http://1.2.3.4:8080/a")).is_some());
        // Exact URL, normalized on both sides.
        assert_eq!(
            b.check(&url("https://mixed.example/Path/~user/./x.bin")),
            Some(BlockMatch::Url("mixed.example/Path/~user/x.bin".into()))
        );
        assert!(
            b.check(&url("https://mixed.example/Path/~user/y.bin"))
                .is_none()
        );
        assert!(
            b.check(&url("https://mixed.example/path/~user/x.bin"))
                .is_none()
        );
    }

    #[test]
    fn urlhaus_csv_fixture() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/guard/urlhaus_sample.csv"
        ))
        .unwrap();
        let mut b = BlocklistSet::new();
        let n = b.add_urlhaus_csv(&text);
        assert_eq!(n, 5, "{b:?}");
        assert_eq!(b.skipped(), 1);
        assert!(b.check(&url("http://198.51.100.23:4455/i")).is_some());
        assert!(
            b.check(&url(
                "https://compromised-blog.example/wp-content/uploads/2026/invoice.js"
            ))
            .is_some()
        );
        // Only the listed URL on the compromised site, not the whole host.
        assert!(
            b.check(&url("https://compromised-blog.example/about"))
                .is_none()
        );
        // Quoted comma and escaped quote in other fields do not shift the URL column.
        assert!(b.check(&url("http://quoted.example/a,b")).is_some());
        assert!(
            b.check(&url("http://xn--80ak6aa92e.example/load"))
                .is_some()
        );
        assert!(b.check(&url("HTTP://DROP.example:80/bin.sh")).is_some());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            parse_csv_line(r#""1","a,b","c""d",e"#),
            ["1", "a,b", "c\"d", "e"]
        );
        assert_eq!(parse_csv_line(""), [""]);
        assert_eq!(parse_csv_line(r#""unterminated"#), ["unterminated"]);
    }
}
