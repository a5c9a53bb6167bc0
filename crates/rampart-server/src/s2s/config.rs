//! Federation settings as plain data (the binary fills them from the `[s2s]` table).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Where to reach one remote domain, overriding DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// XEP-0368: TLS from the first byte instead of STARTTLS.
    pub direct_tls: bool,
}

impl Route {
    /// Parse `HOST:PORT` (STARTTLS) or `tls:HOST:PORT` (direct TLS, XEP-0368). IPv6
    /// addresses are written in brackets: `[::1]:5269`.
    pub fn parse(s: &str) -> Option<Route> {
        let (direct_tls, rest) = match s.strip_prefix("tls:") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (host, port) = rest.rsplit_once(':')?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(Route { host: host.to_owned(), port, direct_tls })
    }
}

/// Everything federation needs to know that is not a backend.
#[derive(Clone, Debug)]
pub struct S2sConfig {
    /// The server-to-server listener (STARTTLS, or direct TLS detected on the same port).
    pub listen: Option<SocketAddr>,
    /// Remote domains we federate with, normalized; `*` allows every domain.
    pub allow: Vec<String>,
    /// Static routes by remote domain (checked before DNS).
    pub routes: HashMap<String, Route>,
    /// Domains (with their subdomains) that may authenticate with server dialback
    /// (XEP-0220) when their certificate does not validate; `*` for all. Default: none.
    pub dialback: Vec<String>,
    /// Let end-to-end encrypted payloads (OMEMO, OpenPGP) cross the border.
    pub allow_e2ee: bool,
    /// Connecting, TLS and authentication to a peer must finish within this.
    pub connect_timeout: Duration,
    /// A link without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Queued stanzas are bounced with `remote-server-timeout` after this long.
    pub bounce_after: Duration,
    /// Longest wait between connection attempts (the backoff doubles up to this).
    pub retry_max: Duration,
    /// Most simultaneous inbound links from one remote domain.
    pub max_links_per_domain: usize,
    /// Stanzas per second read from one inbound link (beyond it, reading slows down).
    pub max_stanzas_per_sec: u32,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            listen: None,
            allow: Vec::new(),
            routes: HashMap::new(),
            dialback: Vec::new(),
            allow_e2ee: false,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            bounce_after: Duration::from_secs(3600),
            retry_max: Duration::from_secs(300),
            max_links_per_domain: 4,
            max_stanzas_per_sec: 200,
        }
    }
}

impl S2sConfig {
    /// Is federation with `domain` allowed (in both directions)? An allowed domain's
    /// subdomains (its group chat service, `conference.partner.example`) are allowed too.
    pub fn allows(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.allow.iter().any(|a| a == "*" || *a == domain || domain.ends_with(&format!(".{a}")))
    }

    /// May `domain` authenticate with dialback (and do we use dialback towards it)?
    pub fn dialback_allowed(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.dialback.iter().any(|a| a == "*" || *a == domain || domain.ends_with(&format!(".{a}")))
    }

    /// The static route for `domain`, or else for the nearest parent domain that has one
    /// (a partner's subdomain services live on the partner's server).
    pub fn route_for(&self, domain: &str) -> Option<&Route> {
        let mut d = domain;
        loop {
            if let Some(r) = self.routes.get(d) {
                return Some(r);
            }
            d = d.split_once('.')?.1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("127.0.0.1:5269"),
            Some(Route { host: "127.0.0.1".into(), port: 5269, direct_tls: false })
        );
        assert_eq!(
            Route::parse("tls:xmpp.example.com:5270"),
            Some(Route { host: "xmpp.example.com".into(), port: 5270, direct_tls: true })
        );
        assert_eq!(Route::parse("[::1]:5269").map(|r| r.host), Some("::1".into()));
        for bad in ["", "host", "host:", ":5269", "host:0", "host:99999", "a b:1"] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn allow_list() {
        let mut c = S2sConfig::default();
        assert!(!c.allows("partner.example"));
        c.allow = vec!["partner.example".into()];
        assert!(c.allows("partner.example"));
        assert!(c.allows("conference.partner.example"));
        assert!(!c.allows("evilpartner.example"));
        assert!(!c.allows("other.example"));
        c.routes.insert("partner.example".into(), Route::parse("127.0.0.1:5269").unwrap());
        assert_eq!(c.route_for("conference.partner.example").map(|r| r.port), Some(5269));
        assert!(c.route_for("other.example").is_none());
        c.allow.push("*".into());
        assert!(c.allows("other.example"));
    }
}
