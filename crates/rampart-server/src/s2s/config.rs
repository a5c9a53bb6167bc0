//! Federation settings as plain data (the binary fills them from the `[s2s]` table), and
//! the border policy's decision: which domains, which local accounts, and which kinds of
//! traffic (per domain and direction) may cross.

use std::collections::{HashMap, HashSet};
use std::fmt;
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
    /// What may cross, per remote domain (with its subdomains) and direction; the key `*`
    /// is the default for domains without their own entry. No entry at all: everything.
    pub domains: HashMap<String, DomainRules>,
    /// Local accounts (bare JIDs, groups expanded) that may federate with any domain, even
    /// one not on the allow-list (the kind rules still apply).
    pub allow_users: HashSet<String>,
    /// Local accounts (bare JIDs, groups expanded) that may not federate at all.
    pub deny_users: HashSet<String>,
}

/// A kind of traffic the border rules name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One-to-one messages (and headlines) without a file link.
    Messages,
    /// Presence subscriptions and availability between contacts.
    Presence,
    /// Group chat (and invitations). Its direction is where the room is, not which way a
    /// stanza goes: `outbound` is our accounts in the remote domain's rooms, `inbound` the
    /// remote domain's users in our rooms (both need stanzas flowing both ways).
    Rooms,
    /// Messages carrying a file link (XEP-0066 out-of-band URL, SIMS, SFS).
    Files,
    /// IQ requests between entities (not the answers to requests that crossed).
    Iqs,
}

impl Kind {
    /// Every kind, in the order the configuration documents them.
    pub const ALL: [Kind; 5] = [Kind::Messages, Kind::Presence, Kind::Rooms, Kind::Files, Kind::Iqs];

    /// The configuration name (`"messages"`, `"presence"`, `"rooms"`, `"files"`, `"iqs"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Messages => "messages",
            Kind::Presence => "presence",
            Kind::Rooms => "rooms",
            Kind::Files => "files",
            Kind::Iqs => "iqs",
        }
    }

    /// Parse a configuration name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a stanza crosses the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From a remote domain to us.
    Inbound,
    /// From us to a remote domain.
    Outbound,
}

/// What may cross for one remote domain, per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRules {
    pub inbound: HashSet<Kind>,
    pub outbound: HashSet<Kind>,
}

impl DomainRules {
    /// Everything, both ways.
    pub fn all() -> DomainRules {
        DomainRules { inbound: Kind::ALL.into_iter().collect(), outbound: Kind::ALL.into_iter().collect() }
    }

    fn kinds(&self, dir: Direction) -> &HashSet<Kind> {
        match dir {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
}

/// Why the border refused a stanza: the rule (security event name) and the text for the
/// sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub reason: String,
}

/// The local party of a stanza crossing the border.
#[derive(Clone, Copy, Debug)]
pub struct LocalParty<'a> {
    /// Its bare JID (an account, a room, or the server's own domain).
    pub bare: &'a str,
    /// Is it an account of this server (the user exceptions apply only to accounts)?
    pub is_account: bool,
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
            domains: HashMap::new(),
            allow_users: HashSet::new(),
            deny_users: HashSet::new(),
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

    /// May a link with `domain` exist at all: it is on the allow-list, or some local
    /// account is allowed to federate with any domain (each stanza is then checked with
    /// [`S2sConfig::check`]).
    pub fn may_link(&self, domain: &str) -> bool {
        self.allows(domain) || !self.allow_users.is_empty()
    }

    /// The rules for `domain`: its own entry, else its nearest parent's, else `*`, else
    /// everything; with the key they came from (for error texts).
    pub fn rules_for(&self, domain: &str) -> (Option<&str>, Option<&DomainRules>) {
        let domain = domain.to_ascii_lowercase();
        let mut d = domain.as_str();
        loop {
            if let Some((k, r)) = self.domains.get_key_value(d) {
                return (Some(k.as_str()), Some(r));
            }
            match d.split_once('.') {
                Some((_, rest)) => d = rest,
                None => break,
            }
        }
        match self.domains.get_key_value("*") {
            Some((k, r)) => (Some(k.as_str()), Some(r)),
            None => (None, None),
        }
    }

    /// The border decision for one stanza between `local` and `remote_domain` going
    /// `dir`: barred accounts first, then the allow-list (or an account's exception), then
    /// the kind rules. `kind` is `None` for traffic that is never judged by kind (answers
    /// to requests that crossed, errors, the server's own harmless IQs).
    pub fn check(&self, dir: Direction, local: LocalParty<'_>, remote_domain: &str, kind: Option<Kind>) -> Result<(), Refusal> {
        let remote_domain = remote_domain.to_ascii_lowercase();
        if local.is_account && self.deny_users.contains(local.bare) {
            return Err(Refusal {
                rule: "s2s.deny-user",
                reason: format!("{} may not federate with other domains by this server's policy", local.bare),
            });
        }
        if !self.allows(&remote_domain) && !(local.is_account && self.allow_users.contains(local.bare)) {
            return Err(Refusal {
                rule: "s2s.allow-list",
                reason: format!("federation with {remote_domain} is not allowed by this server's policy"),
            });
        }
        let Some(kind) = kind else { return Ok(()) };
        let dir = match kind {
            // Room traffic of an account is in a remote room; of our service, in ours.
            Kind::Rooms if local.is_account => Direction::Outbound,
            Kind::Rooms => Direction::Inbound,
            _ => dir,
        };
        let (key, Some(rules)) = self.rules_for(&remote_domain) else { return Ok(()) };
        let allowed = rules.kinds(dir);
        if allowed.contains(&kind) {
            return Ok(());
        }
        let key = key.unwrap_or("*");
        let mut names: Vec<&str> = Kind::ALL.into_iter().filter(|k| allowed.contains(k)).map(Kind::as_str).collect();
        if names.is_empty() {
            names.push("nothing");
        }
        let what = match (kind, dir) {
            (Kind::Rooms, Direction::Outbound) => format!("rooms on {remote_domain}"),
            (Kind::Rooms, Direction::Inbound) => format!("rooms here for users of {remote_domain}"),
            (_, Direction::Inbound) => format!("{kind} from {remote_domain}"),
            (_, Direction::Outbound) => format!("{kind} to {remote_domain}"),
        };
        Err(Refusal {
            rule: "s2s.rules",
            reason: format!(
                "{what} may not cross the border: rule [s2s.domains.\"{key}\"] allows {} {}",
                match dir {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
                names.join(", ")
            ),
        })
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

    fn user(bare: &str) -> LocalParty<'_> {
        LocalParty { bare, is_account: true }
    }

    fn rules(inbound: &[Kind], outbound: &[Kind]) -> DomainRules {
        DomainRules { inbound: inbound.iter().copied().collect(), outbound: outbound.iter().copied().collect() }
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("Messages"), None);
        assert_eq!(Kind::parse("all"), None);
    }

    #[test]
    fn no_rules_means_everything_for_allowed_domains() {
        let mut c = S2sConfig::default();
        c.allow = vec!["partner.example".into()];
        for k in Kind::ALL {
            assert!(c.check(Direction::Inbound, user("a@us"), "partner.example", Some(k)).is_ok());
            assert!(c.check(Direction::Outbound, user("a@us"), "Partner.Example", Some(k)).is_ok());
        }
        let e = c.check(Direction::Outbound, user("a@us"), "other.example", Some(Kind::Messages)).unwrap_err();
        assert_eq!(e.rule, "s2s.allow-list");
        assert!(e.reason.contains("other.example"));
        // The allow-list holds even for traffic not judged by kind.
        assert!(c.check(Direction::Inbound, user("a@us"), "other.example", None).is_err());
        assert!(!c.may_link("other.example"));
    }

    #[test]
    fn kinds_per_domain_and_direction() {
        let mut c = S2sConfig::default();
        c.allow = vec!["*".into()];
        c.domains.insert("partner.example".into(), rules(&[Kind::Messages], &[Kind::Messages, Kind::Presence]));
        c.domains.insert("*".into(), rules(&[], &[]));
        let us = user("a@us");
        assert!(c.check(Direction::Outbound, us, "partner.example", Some(Kind::Presence)).is_ok());
        let e = c.check(Direction::Inbound, us, "partner.example", Some(Kind::Presence)).unwrap_err();
        assert_eq!(e.rule, "s2s.rules");
        assert!(e.reason.contains("presence from partner.example"), "{}", e.reason);
        assert!(e.reason.contains("[s2s.domains.\"partner.example\"] allows inbound messages"), "{}", e.reason);
        // A subdomain (the partner's group chat service) follows its parent's rules.
        let e = c.check(Direction::Outbound, us, "conference.partner.example", Some(Kind::Rooms)).unwrap_err();
        assert!(e.reason.contains("rooms on conference.partner.example"), "{}", e.reason);
        // ... and the partner's answers from its room are judged the same way (outbound).
        assert!(c.check(Direction::Inbound, us, "conference.partner.example", Some(Kind::Rooms)).is_err());
        // Rooms direction is where the room is: partner users in our rooms is `inbound`.
        c.domains.insert("partner.example".into(), rules(&[Kind::Rooms], &[]));
        let room = LocalParty { bare: "room@conference.us", is_account: false };
        assert!(c.check(Direction::Inbound, room, "partner.example", Some(Kind::Rooms)).is_ok());
        assert!(c.check(Direction::Outbound, room, "partner.example", Some(Kind::Rooms)).is_ok());
        let e = c.check(Direction::Inbound, us, "conference.partner.example", Some(Kind::Rooms)).unwrap_err();
        assert!(e.reason.contains("allows outbound nothing"), "{}", e.reason);
        c.domains.insert("partner.example".into(), rules(&[], &[Kind::Messages]));
        let e = c.check(Direction::Outbound, room, "partner.example", Some(Kind::Rooms)).unwrap_err();
        assert!(e.reason.contains("rooms here for users of partner.example"), "{}", e.reason);
        // Other domains get the `*` default: nothing.
        let e = c.check(Direction::Outbound, us, "other.example", Some(Kind::Messages)).unwrap_err();
        assert!(e.reason.contains("[s2s.domains.\"*\"] allows outbound nothing"), "{}", e.reason);
        // Answers and errors are not judged by kind.
        assert!(c.check(Direction::Inbound, us, "other.example", None).is_ok());
        assert_eq!(c.rules_for("PARTNER.example").0, Some("partner.example"));
        assert_eq!(c.rules_for("evilpartner.example").0, Some("*"));
    }

    #[test]
    fn user_exceptions() {
        let mut c = S2sConfig::default();
        c.allow = vec!["partner.example".into()];
        c.allow_users.insert("ceo@us".into());
        c.deny_users.insert("intern@us".into());
        assert!(c.may_link("anywhere.example"), "an exempt account may need a link to any domain");
        assert!(c.check(Direction::Outbound, user("ceo@us"), "anywhere.example", Some(Kind::Messages)).is_ok());
        assert!(c.check(Direction::Inbound, user("ceo@us"), "anywhere.example", Some(Kind::Messages)).is_ok());
        let e = c.check(Direction::Outbound, user("bob@us"), "anywhere.example", Some(Kind::Messages)).unwrap_err();
        assert_eq!(e.rule, "s2s.allow-list");
        // Only accounts are exempted: a room with the same address is not.
        let room = LocalParty { bare: "ceo@us", is_account: false };
        assert!(c.check(Direction::Outbound, room, "anywhere.example", Some(Kind::Rooms)).is_err());
        // A barred account federates with no one, allowed domain or not, either way.
        for dir in [Direction::Inbound, Direction::Outbound] {
            let e = c.check(dir, user("intern@us"), "partner.example", Some(Kind::Messages)).unwrap_err();
            assert_eq!(e.rule, "s2s.deny-user");
            assert!(e.reason.contains("intern@us"));
        }
        // Exempt accounts still follow the kind rules.
        c.domains.insert("*".into(), rules(&[Kind::Messages], &[Kind::Messages]));
        assert!(c.check(Direction::Outbound, user("ceo@us"), "anywhere.example", Some(Kind::Files)).is_err());
    }
}
