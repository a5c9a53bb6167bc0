//! Federation wiring: the `[s2s]` configuration table (with the border rules
//! `[s2s.domains.*]`, `[s2s.groups]`, `allow_users` and `deny_users`), the trust anchors (the configured CA
//! bundle, read here), the DNS SRV resolver (hickory), and `rampart s2s status`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rampart_server::s2s::{DomainRules, Kind, Resolve, Route, S2sConfig, S2sSetup, Srv};
use serde::Deserialize;

use crate::config::Config;

/// `[s2s]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sFileConfig {
    pub enabled: bool,
    /// Remote domains allowed in both directions; `"*"` allows all. Empty: no federation.
    pub allow: Vec<String>,
    /// Static routes: domain → `HOST:PORT` (STARTTLS) or `tls:HOST:PORT` (direct TLS).
    pub routes: HashMap<String, String>,
    /// Extra trust anchors for peer certificates (PEM bundle).
    pub ca_file: Option<PathBuf>,
    /// Also trust the public web PKI roots (compiled in).
    pub public_roots: bool,
    /// Domains that may use server dialback when their certificate does not validate.
    pub dialback: Vec<String>,
    /// Let OMEMO/OpenPGP-encrypted messages cross the border.
    pub allow_e2ee: bool,
    pub connect_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub bounce_after_secs: u64,
    pub retry_max_secs: u64,
    pub max_links_per_domain: usize,
    pub max_stanzas_per_sec: u32,
    /// What may cross per remote domain (`"*"`: the default for the others).
    pub domains: HashMap<String, DomainRulesFile>,
    /// Named groups of local accounts, referred to as `"group:NAME"`.
    pub groups: HashMap<String, Vec<String>>,
    /// Local accounts (or `group:NAME`) that may federate with any domain.
    pub allow_users: Vec<String>,
    /// Local accounts (or `group:NAME`) that may not federate at all.
    pub deny_users: Vec<String>,
}

/// `[s2s.domains."DOMAIN"]` as written in the file: `allow` for both directions, or
/// `inbound` / `outbound` for one (overriding `allow`). A direction named by neither
/// allows nothing. Kinds: `messages`, `presence`, `rooms`, `files`, `iqs`, or `all`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainRulesFile {
    pub allow: Option<Vec<String>>,
    pub inbound: Option<Vec<String>>,
    pub outbound: Option<Vec<String>>,
}

/// Parse a list of kind names (`all` is every kind).
fn kinds(list: &[String], key: &str) -> Result<HashSet<Kind>> {
    let mut out = HashSet::new();
    for k in list {
        if k == "all" {
            out.extend(Kind::ALL);
            continue;
        }
        let kind = Kind::parse(k).with_context(|| {
            format!("{key}: {k:?} is not a kind of traffic (messages, presence, rooms, files, iqs, all)")
        })?;
        out.insert(kind);
    }
    Ok(out)
}

/// Expand `allow_users` / `deny_users`: bare JIDs of this domain, or `group:NAME`.
fn users(list: &[String], groups: &HashMap<String, Vec<String>>, own_domain: &str, key: &str) -> Result<HashSet<String>> {
    let account = |v: &str, key: &str| -> Result<String> {
        let j = rampart_proto::Jid::parse(v).ok().filter(|j| j.node().is_some() && j.resource().is_none());
        let j = j.with_context(|| format!("{key}: {v:?} is not an account's bare JID"))?;
        if j.domain() != own_domain {
            bail!("{key}: {v:?} is not an account of this server ({own_domain})");
        }
        Ok(j.as_str().to_owned())
    };
    let mut out = HashSet::new();
    for u in list {
        match u.strip_prefix("group:") {
            Some(g) => {
                let members = groups.get(g).with_context(|| format!("{key}: group {g:?} is not defined in [s2s.groups]"))?;
                for m in members {
                    out.insert(account(m, &format!("s2s.groups.{g}"))?);
                }
            }
            None => {
                out.insert(account(u, key)?);
            }
        }
    }
    Ok(out)
}

impl Default for S2sFileConfig {
    fn default() -> Self {
        let d = S2sConfig::default();
        S2sFileConfig {
            enabled: false,
            allow: Vec::new(),
            routes: HashMap::new(),
            ca_file: None,
            public_roots: true,
            dialback: Vec::new(),
            allow_e2ee: d.allow_e2ee,
            connect_timeout_secs: d.connect_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            bounce_after_secs: d.bounce_after.as_secs(),
            retry_max_secs: d.retry_max.as_secs(),
            max_links_per_domain: d.max_links_per_domain,
            max_stanzas_per_sec: d.max_stanzas_per_sec,
            domains: HashMap::new(),
            groups: HashMap::new(),
            allow_users: Vec::new(),
            deny_users: Vec::new(),
        }
    }
}

/// Validated federation settings.
#[derive(Debug, Clone)]
pub struct S2sSettings {
    pub config: S2sConfig,
    pub ca_file: Option<PathBuf>,
    pub public_roots: bool,
}

fn domain(v: &str) -> Option<String> {
    rampart_proto::Jid::parse(v).ok().filter(|j| j.node().is_none() && j.resource().is_none()).map(|j| j.as_str().to_owned())
}

/// Validate `[s2s]` (with `listen.s2s`); `None` when federation is off.
pub fn settings(f: &S2sFileConfig, listen: Option<SocketAddr>, own_domain: &str, source: &str) -> Result<Option<S2sSettings>> {
    if !f.enabled {
        if listen.is_some() {
            bail!("{source}: listen.s2s: federation is off; set [s2s] enabled = true (and an allow-list) to use it");
        }
        return Ok(None);
    }
    let mut allow = Vec::new();
    for a in &f.allow {
        if a == "*" {
            allow.push(a.clone());
            continue;
        }
        let d = domain(a).with_context(|| format!("{source}: s2s.allow: {a:?} is not a domain (or \"*\")"))?;
        if d == own_domain {
            bail!("{source}: s2s.allow: {a:?} is this server's own domain");
        }
        allow.push(d);
    }
    let mut dialback = Vec::new();
    for a in &f.dialback {
        if a == "*" {
            dialback.push(a.clone());
            continue;
        }
        dialback.push(domain(a).with_context(|| format!("{source}: s2s.dialback: {a:?} is not a domain (or \"*\")"))?);
    }
    let mut routes = HashMap::new();
    for (d, r) in &f.routes {
        let dn = domain(d).with_context(|| format!("{source}: s2s.routes: {d:?} is not a domain"))?;
        let route = Route::parse(r)
            .with_context(|| format!("{source}: s2s.routes.{d}: {r:?} is not HOST:PORT or tls:HOST:PORT"))?;
        routes.insert(dn, route);
    }
    let secs = |key: &str, v: u64| -> Result<Duration> {
        if v == 0 {
            bail!("{source}: s2s.{key}: must be at least 1");
        }
        Ok(Duration::from_secs(v))
    };
    if let Some(p) = &f.ca_file
        && !p.is_file()
    {
        bail!("{source}: s2s.ca_file: file {} does not exist", p.display());
    }
    if f.max_links_per_domain == 0 {
        bail!("{source}: s2s.max_links_per_domain: must be at least 1");
    }
    if f.max_stanzas_per_sec == 0 {
        bail!("{source}: s2s.max_stanzas_per_sec: must be at least 1");
    }
    let mut domains = HashMap::new();
    for (d, r) in &f.domains {
        let key = format!("{source}: s2s.domains.{d}");
        let dn = if d == "*" { d.clone() } else { domain(d).with_context(|| format!("{key}: {d:?} is not a domain (or \"*\")"))? };
        if r.allow.is_none() && r.inbound.is_none() && r.outbound.is_none() {
            bail!("{key}: give `allow` (both directions), or `inbound` and/or `outbound`");
        }
        let both = r.allow.as_deref().unwrap_or_default();
        let inbound = kinds(r.inbound.as_deref().unwrap_or(both), &format!("{key}.inbound"))?;
        let outbound = kinds(r.outbound.as_deref().unwrap_or(both), &format!("{key}.outbound"))?;
        domains.insert(dn, DomainRules { inbound, outbound });
    }
    let allow_users = users(&f.allow_users, &f.groups, own_domain, &format!("{source}: s2s.allow_users"))?;
    let deny_users = users(&f.deny_users, &f.groups, own_domain, &format!("{source}: s2s.deny_users"))?;
    let config = S2sConfig {
        listen,
        allow,
        routes,
        dialback,
        allow_e2ee: f.allow_e2ee,
        connect_timeout: secs("connect_timeout_secs", f.connect_timeout_secs)?,
        idle_timeout: secs("idle_timeout_secs", f.idle_timeout_secs)?,
        bounce_after: secs("bounce_after_secs", f.bounce_after_secs)?,
        retry_max: secs("retry_max_secs", f.retry_max_secs)?,
        max_links_per_domain: f.max_links_per_domain,
        max_stanzas_per_sec: f.max_stanzas_per_sec,
        domains,
        allow_users,
        deny_users,
    };
    Ok(Some(S2sSettings { config, ca_file: f.ca_file.clone(), public_roots: f.public_roots }))
}

/// DNS SRV through hickory with the system's resolver configuration.
struct HickorySrv(hickory_resolver::TokioResolver);

#[async_trait]
impl Resolve for HickorySrv {
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, String> {
        match self.0.srv_lookup(name).await {
            Ok(l) => Ok(l
                .iter()
                .map(|s| Srv { priority: s.priority(), weight: s.weight(), port: s.port(), target: s.target().to_utf8() })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Everything the server needs for federation, from the settings and our certificate.
pub fn build(s: &S2sSettings, store: Arc<dyn rampart_store::s2s::S2sStore>, cert: &[u8], key: &[u8]) -> Result<S2sSetup> {
    let extra = match &s.ca_file {
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("s2s.ca_file: reading {}", p.display()))?;
            rampart_server::s2s::tls::parse_ca_bundle(&pem).map_err(|e| anyhow::anyhow!("s2s.ca_file: {e}"))?
        }
        None => Vec::new(),
    };
    let tls = rampart_server::s2s::tls::build(cert, key, &extra, s.public_roots).map_err(|e| anyhow::anyhow!("s2s tls: {e}"))?;
    let resolver: Arc<dyn Resolve> = match hickory_resolver::TokioResolver::builder_tokio() {
        Ok(b) => Arc::new(HickorySrv(b.build())),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS resolver configuration: federation uses static routes and A/AAAA only");
            Arc::new(rampart_server::s2s::NoSrv)
        }
    };
    Ok(S2sSetup { config: s.config.clone(), store, tls, resolver })
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// `rampart s2s status`: every peer link (direction, TLS, authentication) and queue depth.
pub async fn status(cfg: &Config, json: bool) -> Result<()> {
    use rampart_store::s2s::S2sStore;
    let db = crate::setup::open_db(cfg).await?;
    let links = db.links().await?;
    let depths: HashMap<String, u64> = db.queue_depths().await?.into_iter().collect();
    let mut domains: Vec<String> = links.iter().map(|l| l.domain.clone()).chain(depths.keys().cloned()).collect();
    domains.sort();
    domains.dedup();
    if json {
        for d in &domains {
            let queued = depths.get(d).copied().unwrap_or(0);
            let ls: Vec<_> = links
                .iter()
                .filter(|l| &l.domain == d)
                .map(|l| {
                    serde_json::json!({
                        "direction": l.direction, "state": l.state, "remote_addr": l.remote_addr,
                        "tls": l.tls, "auth": l.auth, "since": time(l.since_ms), "updated": time(l.updated_ms),
                        "last_error": l.last_error, "stanzas_in": l.stanzas_in, "stanzas_out": l.stanzas_out,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "domain": d, "queued": queued, "links": ls }));
        }
        return Ok(());
    }
    if domains.is_empty() {
        println!("no federation links and nothing queued");
        return Ok(());
    }
    println!("{:<28} {:<4} {:<10} {:<36} {:<14} {:>6} {:>6} {:>6}  SINCE / LAST ERROR", "DOMAIN", "DIR", "STATE", "TLS", "AUTH", "IN", "OUT", "QUEUED");
    for d in &domains {
        let queued = depths.get(d).copied().unwrap_or(0);
        let mine: Vec<_> = links.iter().filter(|l| &l.domain == d).collect();
        if mine.is_empty() {
            println!("{:<28} {:<4} {:<10} {:<36} {:<14} {:>6} {:>6} {:>6}", d, "out", "no link", "-", "-", 0, 0, queued);
        }
        for l in mine {
            let q = if l.direction == "out" { queued.to_string() } else { "-".into() };
            let tail = match &l.last_error {
                Some(e) => format!("{} {}", time(l.since_ms), e),
                None => time(l.since_ms),
            };
            println!(
                "{:<28} {:<4} {:<10} {:<36} {:<14} {:>6} {:>6} {:>6}  {}",
                d,
                l.direction,
                l.state,
                l.tls.as_deref().unwrap_or("-"),
                l.auth.as_deref().unwrap_or("-"),
                l.stanzas_in,
                l.stanzas_out,
                q,
                tail
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> S2sFileConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn off_by_default_and_listen_needs_it() {
        assert!(settings(&S2sFileConfig::default(), None, "a.example", "t").unwrap().is_none());
        let e = settings(&S2sFileConfig::default(), Some("127.0.0.1:5269".parse().unwrap()), "a.example", "t").unwrap_err();
        assert!(e.to_string().contains("listen.s2s"), "{e}");
    }

    #[test]
    fn parses_allow_and_routes() {
        let s = settings(
            &cfg("enabled = true\nallow = [\"B.example\", \"*\"]\n[routes]\n\"b.example\" = \"tls:127.0.0.1:5270\"\n"),
            None,
            "a.example",
            "t",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.config.allow, vec!["b.example".to_string(), "*".to_string()]);
        assert!(s.config.routes["b.example"].direct_tls);
    }

    #[test]
    fn errors_name_the_key() {
        for (t, key) in [
            ("enabled = true\nallow = [\"not a domain\"]", "s2s.allow"),
            ("enabled = true\nallow = [\"a.example\"]", "s2s.allow"),
            ("enabled = true\n[routes]\n\"b.example\" = \"nope\"", "s2s.routes.b.example"),
            ("enabled = true\nidle_timeout_secs = 0", "s2s.idle_timeout_secs"),
            ("enabled = true\nca_file = \"/nonexistent\"", "s2s.ca_file"),
        ] {
            let e = settings(&cfg(t), None, "a.example", "t").unwrap_err().to_string();
            assert!(e.contains(key), "{t}: {e}");
        }
        assert!(toml::from_str::<S2sFileConfig>("colour = 1").is_err());
    }

    #[test]
    fn border_rules() {
        let s = settings(
            &cfg(concat!(
                "enabled = true\nallow = [\"b.example\"]\n",
                "allow_users = [\"Boss@a.example\", \"group:execs\"]\ndeny_users = [\"intern@a.example\"]\n",
                "[groups]\nexecs = [\"cfo@a.example\"]\n",
                "[domains.\"B.example\"]\nallow = [\"messages\", \"presence\"]\noutbound = [\"all\"]\n",
                "[domains.\"*\"]\ninbound = [\"messages\"]\n",
            )),
            None,
            "a.example",
            "t",
        )
        .unwrap()
        .unwrap();
        let c = &s.config;
        let b = &c.domains["b.example"];
        assert_eq!(b.inbound, [Kind::Messages, Kind::Presence].into_iter().collect());
        assert_eq!(b.outbound, Kind::ALL.into_iter().collect());
        assert_eq!(c.domains["*"].inbound, [Kind::Messages].into_iter().collect());
        assert!(c.domains["*"].outbound.is_empty(), "a direction named by nothing allows nothing");
        assert!(c.allow_users.contains("boss@a.example") && c.allow_users.contains("cfo@a.example"));
        assert!(c.deny_users.contains("intern@a.example"));
    }

    #[test]
    fn border_rule_errors_name_the_key() {
        for (t, key) in [
            ("enabled = true\n[domains.\"b.example\"]\nallow = [\"email\"]", "s2s.domains.b.example.inbound"),
            ("enabled = true\n[domains.\"b.example\"]\n", "s2s.domains.b.example"),
            ("enabled = true\n[domains.\"not a domain\"]\nallow = []", "s2s.domains.not a domain"),
            ("enabled = true\nallow_users = [\"x@other.example\"]", "s2s.allow_users"),
            ("enabled = true\ndeny_users = [\"a.example\"]", "s2s.deny_users"),
            ("enabled = true\ndeny_users = [\"group:nobody\"]", "s2s.deny_users"),
            ("enabled = true\nallow_users = [\"group:g\"]\n[groups]\ng = [\"u@a.example/res\"]", "s2s.groups.g"),
        ] {
            let e = settings(&cfg(t), None, "a.example", "t").unwrap_err().to_string();
            assert!(e.contains(key), "{t}: {e}");
        }
        assert!(toml::from_str::<S2sFileConfig>("[domains.x]\ncolour = 1").is_err());
    }
}
