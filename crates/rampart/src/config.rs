//! The TOML configuration file: parsing, defaults, validation (`rampart config check`), and
//! conversion into the server's runtime settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rampart_server::ServerLimits;
use serde::Deserialize;

/// The whole file. Unknown keys are errors (`deny_unknown_fields`) that name the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default = "default_domain")]
    pub domain: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub listen: Option<ListenConfig>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Threat defense: the guard's own settings plus `rules_dir`, `blocklists`, `clamav`
    /// (taken out before the rest is handed to `rampart_guard::GuardConfig`).
    #[serde(default)]
    pub guard: Option<toml::Table>,
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Group chat (XEP-0045).
    #[serde(default)]
    pub muc: MucConfig,
    /// File sharing (XEP-0363 HTTP File Upload) on the `listen.http` listener.
    #[serde(default)]
    pub upload: crate::upload::UploadConfig,
    /// Federation (server-to-server) on the `listen.s2s` listener.
    #[serde(default)]
    pub s2s: crate::federation::S2sFileConfig,
    /// Push notifications to mobile devices' app servers (XEP-0357).
    #[serde(default)]
    pub push: PushConfig,
    /// XMPP over WebSocket (RFC 7395) on the `listen.http` listener.
    #[serde(default)]
    pub websocket: crate::websocket::WebSocketConfig,
    /// The `listen.http` listener's web-client settings: BOSH (XEP-0206).
    #[serde(default)]
    pub http: crate::bosh::HttpConfig,
}

/// `[push]`: XEP-0357 push notifications (what the app servers are told, and how often).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    pub enabled: bool,
    /// Tell the app server who sent the last message (off: enterprise privacy).
    pub include_sender: bool,
    /// Tell the app server what the last message said (off: enterprise privacy).
    pub include_body: bool,
    /// At most one notification per device per this many seconds while it is away.
    pub min_interval_secs: u64,
    /// Registrations (devices) kept per account; the least recently enabled goes first.
    pub max_devices: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        let d = rampart_server::modules::push::PushSettings::default();
        PushConfig {
            enabled: d.enabled,
            include_sender: d.include_sender,
            include_body: d.include_body,
            min_interval_secs: d.min_interval.as_secs(),
            max_devices: d.max_per_account,
        }
    }
}

/// Validate `[push]` into the server's settings.
fn push_settings(p: &PushConfig, source: &str) -> Result<rampart_server::modules::push::PushSettings> {
    if !(1..=86_400).contains(&p.min_interval_secs) {
        bail!("{source}: push.min_interval_secs: must be between 1 and 86400");
    }
    if !(1..=64).contains(&p.max_devices) {
        bail!("{source}: push.max_devices: must be between 1 and 64");
    }
    Ok(rampart_server::modules::push::PushSettings {
        enabled: p.enabled,
        include_sender: p.include_sender,
        include_body: p.include_body,
        min_interval: Duration::from_secs(p.min_interval_secs),
        max_per_account: p.max_devices,
    })
}

/// `[muc]`: the group chat service and the administrator's policy for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    pub enabled: bool,
    /// Service domain; `conference.<domain>` when absent.
    pub domain: Option<String>,
    /// Who may create rooms: `local` (every local account), `admins` or `nobody`.
    pub create: String,
    /// Accounts that may create rooms when `create = "admins"`.
    pub admins: Vec<String>,
    /// Whether JIDs of other domains may join rooms and be invited.
    pub allow_external: bool,
    pub max_rooms_per_user: usize,
    pub max_rooms: usize,
    pub max_history: usize,
    pub max_occupants: usize,
}

impl Default for MucConfig {
    fn default() -> Self {
        let d = rampart_server::modules::muc::MucSettings::for_domain("localhost");
        MucConfig {
            enabled: true,
            domain: None,
            create: "local".into(),
            admins: Vec::new(),
            allow_external: d.allow_external,
            max_rooms_per_user: d.max_rooms_per_user,
            max_rooms: d.max_rooms,
            max_history: d.max_history,
            max_occupants: d.max_occupants,
        }
    }
}

/// Validate `[muc]` into the service's settings (`None` when switched off).
fn muc_settings(m: &MucConfig, domain: &str, source: &str) -> Result<Option<rampart_server::modules::muc::MucSettings>> {
    use rampart_server::modules::muc::{CreatePolicy, MucSettings};
    if !m.enabled {
        return Ok(None);
    }
    let mut s = MucSettings::for_domain(domain);
    if let Some(d) = &m.domain {
        let j = rampart_proto::Jid::parse(d)
            .ok()
            .filter(|j| j.node().is_none() && j.resource().is_none())
            .with_context(|| format!("{source}: muc.domain: {d:?} is not a valid XMPP domain"))?;
        if !j.as_str().ends_with(&format!(".{domain}")) {
            bail!("{source}: muc.domain: {d:?} must be a subdomain of {domain:?}");
        }
        s.domain = j.as_str().to_owned();
    }
    s.create = match m.create.as_str() {
        "local" => CreatePolicy::Local,
        "admins" => CreatePolicy::Admins,
        "nobody" => CreatePolicy::Nobody,
        other => bail!("{source}: muc.create: {other:?} is not one of \"local\", \"admins\", \"nobody\""),
    };
    for a in &m.admins {
        let j = rampart_proto::Jid::parse(a)
            .ok()
            .filter(|j| j.node().is_some() && j.resource().is_none())
            .with_context(|| format!("{source}: muc.admins: {a:?} is not a bare JID"))?;
        s.admins.push(j.as_str().to_owned());
    }
    if s.create == CreatePolicy::Admins && s.admins.is_empty() {
        bail!("{source}: muc.admins: create = \"admins\" needs at least one admin");
    }
    for (key, v) in [("max_rooms_per_user", m.max_rooms_per_user), ("max_rooms", m.max_rooms), ("max_occupants", m.max_occupants)] {
        if v == 0 {
            bail!("{source}: muc.{key}: must be at least 1");
        }
    }
    if m.max_history > 1000 {
        bail!("{source}: muc.max_history: at most 1000");
    }
    s.allow_external = m.allow_external;
    s.max_rooms_per_user = m.max_rooms_per_user;
    s.max_rooms = m.max_rooms;
    s.max_history = m.max_history;
    s.max_occupants = m.max_occupants;
    Ok(Some(s))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    pub enabled: bool,
    /// Delete whole archive segments older than this many days (0 keeps everything).
    pub retention_days: u64,
    pub checkpoint_every_records: u64,
    pub checkpoint_interval_secs: u64,
    /// A segment (the unit retention deletes) closes at a UTC day boundary or after this
    /// many records.
    pub segment_max_records: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            retention_days: 0,
            checkpoint_every_records: 10_000,
            checkpoint_interval_secs: 300,
            segment_max_records: 100_000,
        }
    }
}

/// Where the guard's engines come from.
#[derive(Debug, Clone)]
pub struct GuardSetup {
    pub config: rampart_guard::GuardConfig,
    /// Extra YARA rule files (`*.yar`, `*.yara`) beside the built-in starter rules.
    pub rules_dir: Option<PathBuf>,
    /// Blocklist files: plain (one host or URL a line) or URLhaus CSV (`.csv`).
    pub blocklists: Vec<PathBuf>,
    /// clamd address (`tcp:HOST:PORT` or `unix:/path`).
    pub clamav: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub c2s: Option<String>,
    pub c2s_tls: Option<String>,
    pub s2s: Option<String>,
    pub http: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_stanza_bytes: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
    pub stanza_timeout_secs: Option<u64>,
    pub auth_failures: Option<u32>,
    pub auth_window_secs: Option<u64>,
    pub auth_block_secs: Option<u64>,
    pub offline_limit: Option<usize>,
    pub resume_timeout_secs: Option<u64>,
    pub resume_queue_limit: Option<usize>,
    pub session_queue_limit: Option<usize>,
}

/// A `[limits]` count that must be at least 1 when given (`Default` is zero for the
/// integer types used), or the default when absent.
fn at_least_one<T: Copy + PartialEq + Default>(source: &str, key: &str, value: Option<T>, default: T) -> Result<T> {
    match value {
        Some(n) if n == T::default() => bail!("{source}: limits.{key}: must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

fn default_domain() -> String {
    "localhost".into()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./rampart-data")
}

pub const DEFAULT_C2S: &str = "0.0.0.0:5222";
pub const DEFAULT_C2S_TLS: &str = "0.0.0.0:5223";

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub domain: String,
    pub data_dir: PathBuf,
    pub c2s: Option<SocketAddr>,
    pub c2s_tls: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: ServerLimits,
    pub guard: GuardSetup,
    pub archive: ArchiveConfig,
    /// Group chat settings (`None` when `[muc] enabled = false`).
    pub muc: Option<rampart_server::modules::muc::MucSettings>,
    /// HTTPS listener (uploads), if any.
    pub http: Option<SocketAddr>,
    /// The upload service (`None` without `listen.http` or with `[upload] enabled = false`).
    pub upload: Option<crate::upload::UploadSetup>,
    /// XMPP over WebSocket (`None` without `listen.http` or with `[websocket] enabled = false`).
    pub websocket: Option<crate::websocket::WebSocketSetup>,
    /// BOSH (`None` without `listen.http` or with `[http] bosh = false`).
    pub bosh: Option<crate::bosh::BoshSetup>,
    /// Federation (`None` unless `[s2s] enabled = true`).
    pub s2s: Option<crate::federation::S2sSettings>,
    /// XEP-0357 push notifications.
    pub push: rampart_server::modules::push::PushSettings,
    /// Where it came from, for messages.
    pub source: String,
}

/// Find and load the configuration: `--config`/`RAMPART_CONFIG`, else `./rampart.toml` if it
/// exists, else built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<Config> {
    match explicit {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
            parse(&text, &p.display().to_string(), p.parent())
        }
        None if Path::new("rampart.toml").exists() => {
            let text = std::fs::read_to_string("rampart.toml").context("reading ./rampart.toml")?;
            parse(&text, "./rampart.toml", None)
        }
        None => parse("", "built-in defaults", None),
    }
}

/// Parse and validate. Every error names the key and the reason.
pub fn parse(text: &str, source: &str, _base: Option<&Path>) -> Result<Config> {
    let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{source}: {}", describe_toml_error(text, &e)))?;
    let domain = rampart_proto::Jid::parse(&file.domain)
        .ok()
        .filter(|j| j.node().is_none() && j.resource().is_none())
        .with_context(|| format!("{source}: domain: {:?} is not a valid XMPP domain", file.domain))?
        .as_str()
        .to_owned();
    let addr = |key: &str, v: &str| -> Result<SocketAddr> {
        v.parse().map_err(|_| anyhow::anyhow!("{source}: listen.{key}: {v:?} is not an address of the form IP:PORT"))
    };
    let (c2s, c2s_tls) = match &file.listen {
        // No [listen] table: the built-in listeners.
        None => (Some(addr("c2s", DEFAULT_C2S)?), Some(addr("c2s_tls", DEFAULT_C2S_TLS)?)),
        Some(l) => {
            let c2s = addr("c2s", l.c2s.as_deref().unwrap_or(DEFAULT_C2S))?;
            let c2s_tls = l.c2s_tls.as_deref().map(|v| addr("c2s_tls", v)).transpose()?;
            (Some(c2s), c2s_tls)
        }
    };
    match (&file.tls.cert, &file.tls.key) {
        (Some(c), Some(k)) => {
            for (key, p) in [("tls.cert", c), ("tls.key", k)] {
                if !p.is_file() {
                    bail!("{source}: {key}: file {} does not exist", p.display());
                }
            }
        }
        (Some(_), None) => bail!("{source}: tls.key: required when tls.cert is set"),
        (None, Some(_)) => bail!("{source}: tls.cert: required when tls.key is set"),
        (None, None) => {}
    }
    let d = ServerLimits::default();
    let l = &file.limits;
    let positive = |key: &str, v: Option<u64>, default: Duration| -> Result<Duration> {
        match v {
            Some(0) => bail!("{source}: limits.{key}: must be at least 1"),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(default),
        }
    };
    let limits = ServerLimits {
        max_stanza_bytes: match l.max_stanza_bytes {
            Some(n) if !(1024..=16 * 1024 * 1024).contains(&n) => {
                bail!("{source}: limits.max_stanza_bytes: must be between 1024 and 16777216")
            }
            Some(n) => n,
            None => d.max_stanza_bytes,
        },
        max_connections_per_ip: at_least_one(source, "max_connections_per_ip", l.max_connections_per_ip, d.max_connections_per_ip)?,
        handshake_timeout: positive("handshake_timeout_secs", l.handshake_timeout_secs, d.handshake_timeout)?,
        stanza_timeout: positive("stanza_timeout_secs", l.stanza_timeout_secs, d.stanza_timeout)?,
        auth_failures: at_least_one(source, "auth_failures", l.auth_failures, d.auth_failures)?,
        auth_window: positive("auth_window_secs", l.auth_window_secs, d.auth_window)?,
        auth_block: positive("auth_block_secs", l.auth_block_secs, d.auth_block)?,
        offline_limit: l.offline_limit.unwrap_or(d.offline_limit),
        resume_timeout: positive("resume_timeout_secs", l.resume_timeout_secs, d.resume_timeout)?,
        resume_queue: at_least_one(source, "resume_queue_limit", l.resume_queue_limit, d.resume_queue)?,
        session_queue: at_least_one(source, "session_queue_limit", l.session_queue_limit, d.session_queue)?,
    };
    // A login's offline messages are queued for its session all at once: a queue that could
    // not hold them would end every login of a full account before it drained them.
    if limits.session_queue <= limits.offline_limit {
        bail!(
            "{source}: limits.session_queue_limit ({}) must be greater than limits.offline_limit ({})",
            limits.session_queue,
            limits.offline_limit
        );
    }
    let guard = guard_setup(file.guard, source)?;
    // The HTTPS listener (file uploads); only with an explicit [listen] http = "IP:PORT".
    let http = file.listen.as_ref().and_then(|l| l.http.as_deref()).map(|v| addr("http", v)).transpose()?;
    let upload = crate::upload::settings(&file.upload, &domain, http, &guard.config, source)?;
    let websocket = crate::websocket::settings(&file.websocket, &domain, http, source)?;
    let bosh = crate::bosh::settings(&file.http, &domain, http, &limits, source)?;
    let s2s_listen = file.listen.as_ref().and_then(|l| l.s2s.as_deref()).map(|v| addr("s2s", v)).transpose()?;
    let s2s = crate::federation::settings(&file.s2s, s2s_listen, &domain, source)?;
    if file.archive.checkpoint_every_records == 0 || file.archive.checkpoint_interval_secs == 0 || file.archive.segment_max_records == 0 {
        bail!("{source}: archive.checkpoint_every_records, archive.checkpoint_interval_secs and archive.segment_max_records must be at least 1");
    }
    Ok(Config {
        push: push_settings(&file.push, source)?,
        guard,
        archive: file.archive,
        muc: muc_settings(&file.muc, &domain, source)?,
        upload,
        websocket,
        bosh,
        http,
        s2s,
        domain,
        data_dir: file.data_dir,
        c2s,
        c2s_tls,
        tls_cert: file.tls.cert,
        tls_key: file.tls.key,
        limits,
        source: source.to_owned(),
    })
}

/// Split the `[guard]` table into the binary's keys and the guard library's settings.
fn guard_setup(table: Option<toml::Table>, source: &str) -> Result<GuardSetup> {
    let mut table = table.unwrap_or_default();
    let rules_dir = match table.remove("rules_dir") {
        None => None,
        Some(toml::Value::String(p)) => {
            let p = PathBuf::from(p);
            if !p.is_dir() {
                bail!("{source}: guard.rules_dir: {} is not a directory", p.display());
            }
            Some(p)
        }
        Some(_) => bail!("{source}: guard.rules_dir: expected a path string"),
    };
    let blocklists = match table.remove("blocklists") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => {
            let mut out = Vec::new();
            for v in a {
                let Some(p) = v.as_str() else { bail!("{source}: guard.blocklists: expected an array of path strings") };
                let p = PathBuf::from(p);
                if !p.is_file() {
                    bail!("{source}: guard.blocklists: file {} does not exist", p.display());
                }
                out.push(p);
            }
            out
        }
        Some(_) => bail!("{source}: guard.blocklists: expected an array of path strings"),
    };
    let clamav = match table.remove("clamav") {
        None => None,
        Some(toml::Value::Table(mut t)) => {
            let addr = match t.remove("address") {
                Some(toml::Value::String(a)) => a,
                _ => bail!("{source}: guard.clamav.address: required, e.g. \"tcp:127.0.0.1:3310\" or \"unix:/run/clamav/clamd.ctl\""),
            };
            if let Some(k) = t.keys().next() {
                bail!("{source}: guard.clamav.{k}: unknown key");
            }
            rampart_guard::ClamdScanner::new(&addr).map_err(|e| anyhow::anyhow!("{source}: guard.clamav.address: {e}"))?;
            Some(addr)
        }
        Some(_) => bail!("{source}: guard.clamav: expected a table"),
    };
    let text = toml::to_string(&table).unwrap_or_default();
    let config: rampart_guard::GuardConfig = toml::from_str(&text).map_err(|e| {
        let d = describe_toml_error(&text, &e);
        anyhow::anyhow!("{source}: guard.{d}")
    })?;
    Ok(GuardSetup { config, rules_dir, blocklists, clamav })
}

/// toml's errors say "unknown field `foo`" with a byte span; name the key in full
/// (`listen.foo`) by finding the table header above the span.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    // The span covers the key (unknown field) or the value (wrong type); in the latter case
    // the key is what stands before `=` on that line.
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_prefix = &text[line_start..start];
    let key = match line_prefix.find('=') {
        Some(eq) => line_prefix[..eq].trim().trim_matches('"').to_owned(),
        None => text.get(span.clone()).unwrap_or("").trim().trim_matches('"').to_owned(),
    };
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let full = match (table, key.is_empty()) {
        (_, true) => return msg,
        (Some(t), false) if !key.starts_with('[') => format!("{t}.{key}"),
        _ => key,
    };
    format!("{full}: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = parse("", "t", None).unwrap();
        assert_eq!(c.domain, "localhost");
        assert_eq!(c.c2s.unwrap().port(), 5222);
        assert_eq!(c.c2s_tls.unwrap().port(), 5223);
    }

    #[test]
    fn listen_table_turns_off_missing_listeners() {
        let c = parse("[listen]\nc2s = \"127.0.0.1:1\"\n", "t", None).unwrap();
        assert!(c.c2s_tls.is_none());
    }

    #[test]
    fn muc_defaults_and_policy() {
        use rampart_server::modules::muc::CreatePolicy;
        let c = parse("domain = \"corp.example\"\n", "t", None).unwrap();
        let m = c.muc.unwrap();
        assert_eq!(m.domain, "conference.corp.example");
        assert_eq!(m.create, CreatePolicy::Local);
        assert!(!m.allow_external);
        let c = parse("[muc]\ncreate = \"admins\"\nadmins = [\"boss@localhost\"]\nmax_history = 5\n", "t", None).unwrap();
        let m = c.muc.unwrap();
        assert_eq!((m.create, m.admins.len(), m.max_history), (CreatePolicy::Admins, 1, 5));
        assert!(parse("[muc]\nenabled = false\n", "t", None).unwrap().muc.is_none());
        for (bad, key) in [
            ("create = \"everyone\"", "muc.create"),
            ("create = \"admins\"", "muc.admins"),
            ("admins = [\"not a jid@\"]", "muc.admins"),
            ("domain = \"rooms.elsewhere.example\"", "muc.domain"),
            ("max_rooms = 0", "muc.max_rooms"),
            ("colour = 1", "colour"),
        ] {
            let e = parse(&format!("[muc]\n{bad}\n"), "t", None).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn push_defaults_and_bounds() {
        let p = parse("", "t", None).unwrap().push;
        assert!(p.enabled && !p.include_sender && !p.include_body);
        assert_eq!((p.min_interval.as_secs(), p.max_per_account), (30, 8));
        let p = parse("[push]\nenabled = false\ninclude_body = true\nmin_interval_secs = 5\nmax_devices = 2\n", "t", None).unwrap().push;
        assert!(!p.enabled && p.include_body && !p.include_sender);
        assert_eq!((p.min_interval.as_secs(), p.max_per_account), (5, 2));
        for (bad, key) in [
            ("min_interval_secs = 0", "push.min_interval_secs"),
            ("max_devices = 0", "push.max_devices"),
            ("max_devices = 1000", "push.max_devices"),
            ("include_body = \"yes\"", "push.include_body"),
            ("colour = 1", "colour"),
        ] {
            let e = parse(&format!("[push]\n{bad}\n"), "t", None).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[listen]\nfoo = 1\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("foo"), "{e}");
        let e = parse("colour = 1\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[listen]\nc2s = \"nope\"\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("listen.c2s"), "{e}");
        let e = parse("domain = \"a b\"\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("domain"), "{e}");
        let e = parse("[tls]\ncert = \"/nonexistent\"\nkey = \"/nonexistent\"\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("tls.cert"), "{e}");
        let e = parse("[limits]\nmax_stanza_bytes = 'lots'\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("limits.max_stanza_bytes"), "{e}");
        let e = parse("[limits]\nstanza_timeout_secs = 0\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("limits.stanza_timeout_secs"), "{e}");
        let e = parse("[limits]\nresume_queue_limit = 0\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("limits.resume_queue_limit"), "{e}");
        let c = parse("[limits]\nresume_queue_limit = 50\n", "t", None).expect("parses");
        assert_eq!(c.limits.resume_queue, 50);
        let e = parse("[limits]\nsession_queue_limit = 0\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("limits.session_queue_limit"), "{e}");
        let e = parse("[limits]\nsession_queue_limit = 500\n", "t", None).unwrap_err().to_string();
        assert!(e.contains("limits.offline_limit (1000)"), "{e}");
        let c = parse("[limits]\nsession_queue_limit = 50\noffline_limit = 20\n", "t", None).expect("parses");
        assert_eq!(c.limits.session_queue, 50);
    }
}
