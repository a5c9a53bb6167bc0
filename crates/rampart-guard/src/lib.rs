//! Rampart's threat defense: every message (and uploaded file) passes the [`Guard`] before it
//! is delivered, stored offline or archived.
//!
//! The guard answers with a [`Verdict`]:
//! - **signatures** ([`Scanner`] engines: [`YaraScanner`], [`ClamdScanner`]) on message text
//!   and files → `Block`;
//! - **lure links** ([`url::Classifier`]): executables, IP literals, lookalike domains, URL
//!   shorteners; and **blocklists** ([`BlocklistSet`]) → `Block`;
//! - **outbreak rules** ([`outbreak`]): contact-list blast, auto-reply worm, epidemic spread,
//!   bots in rooms → `Quarantine` when a threshold is crossed (the crossing message is refused
//!   too). A lure or blocklisted link sent as part of a blast is escalated this way.
//!
//! Errors ([`GuardError`]) mean "could not decide": the caller must hold the stanza (fail
//! closed). This crate knows stanzas and JIDs, never sessions, configuration files or
//! storage; [`ClamdScanner`] is its only network client.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rampart_proto::{Element, Jid, Node};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub mod blocklist;
pub mod config;
pub mod deadline;
pub mod dlp;
pub mod fingerprint;
pub mod outbreak;
pub mod scan;
pub mod uploads;
pub mod url;

pub use blocklist::{BlockMatch, BlocklistSet};
pub use config::{
    Action, AutoReplyConfig, BlastConfig, EpidemicConfig, GuardConfig, LureConfig, RoomBotsConfig,
};
pub use scan::{ClamdScanner, Scanner, YaraScanner};
pub use uploads::{UploadResolver, UploadedFile};

use outbreak::{Detection, KeyKind, Observation, Outbreak, PayloadKey, Rule};

/// Namespaces of the payloads the guard reads.
pub mod ns {
    pub const CLIENT: &str = "jabber:client";
    pub const SERVER: &str = "jabber:server";
    pub const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
    pub const XHTML: &str = "http://www.w3.org/1999/xhtml";
    pub const OOB: &str = "jabber:x:oob";
    pub const REFERENCE: &str = "urn:xmpp:reference:0";
    pub const SIMS: &str = "urn:xmpp:sims:1";
    pub const SFS: &str = "urn:xmpp:sfs:0";
    pub const HASHES: &str = "urn:xmpp:hashes:2";
}

/// Why the guard could not decide. The caller holds the stanza.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A scan engine did not answer within `scan_timeout_ms`.
    #[error("scan timed out")]
    Timeout,
    /// A scan engine failed (clamd unreachable, scan error).
    #[error("scan engine: {0}")]
    Engine(String),
    /// The input exceeds `max_scan_bytes`.
    #[error("input of {size} bytes exceeds the scan limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// YARA rules failed to compile.
    #[error("rules: {0}")]
    Rules(String),
    /// Invalid engine settings (e.g. a clamd address).
    #[error("configuration: {0}")]
    Config(String),
}

/// The guard's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver.
    Allow,
    /// Refuse this stanza only.
    Block(Finding),
    /// Refuse this stanza and quarantine the sender account from now on.
    Quarantine(Finding),
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow)
    }

    pub fn finding(&self) -> Option<&Finding> {
        match self {
            Verdict::Allow => None,
            Verdict::Block(f) | Verdict::Quarantine(f) => Some(f),
        }
    }
}

/// What was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id: `signature`, `lure.executable`, `lure.ip_literal`, `lure.lookalike`,
    /// `lure.shortener`, `blocklist`, `outbreak.blast`, `outbreak.auto_reply`,
    /// `outbreak.epidemic`, `outbreak.room_bots`.
    pub rule: String,
    /// Text for the sender, e.g. "blocked: link to an executable file (.scr)".
    pub reason: String,
    pub evidence: Evidence,
}

/// Evidence of a finding (for the security event log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Text fingerprint (16 hex digits) for text-based outbreak findings.
    pub fingerprint: Option<String>,
    /// The offending link, normalized (scheme-less).
    pub url: Option<String>,
    /// Signature name, as `engine:name`.
    pub signature: Option<String>,
    /// `algo:value` of a file (`sha-256:<hex>` for scanned files; as given for shared files).
    pub file_hash: Option<String>,
    /// Propagation chain, oldest first.
    pub chain: Vec<ChainLink>,
    /// Other accounts involved (recipients of a blast, accounts of an epidemic, room bots).
    pub accounts: Vec<String>,
}

/// One hop of a propagation chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainLink {
    pub sender: String,
    pub recipient: String,
    pub at_ms: i64,
}

/// Content of a message, borrowed from the stanza where possible.
#[derive(Default)]
struct Content<'a> {
    texts: Vec<Cow<'a, str>>,
    urls: Vec<Cow<'a, str>>,
    files: Vec<FileRef<'a>>,
}

#[derive(Default)]
struct FileRef<'a> {
    name: Option<Cow<'a, str>>,
    hash: Option<String>,
}

impl Content<'_> {
    fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.urls.is_empty() && self.files.is_empty()
    }
}

/// The most nested levels of a payload the guard walks.
const MAX_DEPTH: usize = 32;

/// Direct text of an element, borrowed if it is a single text node.
fn text_of(e: &Element) -> Cow<'_, str> {
    let mut texts = e.children.iter().filter_map(|n| match n {
        Node::Text(t) => Some(t.as_str()),
        Node::Element(_) => None,
    });
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(t), None) => Cow::Borrowed(t),
        _ => Cow::Owned(e.text()),
    }
}

/// All text below an element, with element boundaries as spaces; link attributes collected.
fn walk_xhtml<'a>(e: &'a Element, depth: usize, text: &mut String, urls: &mut Vec<Cow<'a, str>>) {
    if depth > MAX_DEPTH {
        return;
    }
    for (k, v) in &e.attrs {
        if matches!(
            k.as_str(),
            "href" | "src" | "cite" | "action" | "formaction" | "poster" | "background"
        ) {
            urls.push(Cow::Borrowed(v.as_str()));
        }
    }
    for n in &e.children {
        match n {
            Node::Text(t) => text.push_str(t),
            Node::Element(c) => {
                text.push(' ');
                walk_xhtml(c, depth + 1, text, urls);
                text.push(' ');
            }
        }
    }
}

/// File-sharing payloads (SIMS, SFS, OOB): names, hashes, source URLs.
fn walk_file<'a>(
    e: &'a Element,
    depth: usize,
    file: &mut FileRef<'a>,
    urls: &mut Vec<Cow<'a, str>>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    for (k, v) in &e.attrs {
        if matches!(k.as_str(), "uri" | "target" | "url" | "href") && v.contains("://") {
            urls.push(Cow::Borrowed(v.as_str()));
        }
    }
    match e.name.as_str() {
        "url" => {
            let t = text_of(e);
            if !t.trim().is_empty() {
                urls.push(t);
            }
        }
        "name" if file.name.is_none() => file.name = Some(text_of(e)),
        "hash" if e.ns == ns::HASHES && file.hash.is_none() => {
            let algo = e.attr("algo").unwrap_or("unknown");
            file.hash = Some(format!("{algo}:{}", text_of(e).trim()));
        }
        _ => {}
    }
    for c in e.elements() {
        walk_file(c, depth + 1, file, urls);
    }
}

fn extract(stanza: &Element) -> Content<'_> {
    let mut c = Content::default();
    for child in stanza.elements() {
        let stanza_ns = child.ns == stanza.ns || child.ns == ns::CLIENT || child.ns == ns::SERVER;
        match child.name.as_str() {
            "body" | "subject" if stanza_ns => {
                let t = text_of(child);
                if !t.trim().is_empty() {
                    c.texts.push(t);
                }
            }
            "html" if child.ns == ns::XHTML_IM => {
                let mut text = String::new();
                walk_xhtml(child, 0, &mut text, &mut c.urls);
                let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                let t = norm(&text);
                if !t.is_empty() && !c.texts.iter().any(|b| norm(b) == t) {
                    c.texts.push(Cow::Owned(t));
                }
            }
            "x" if child.ns == ns::OOB => {
                let mut f = FileRef::default();
                walk_file(child, 0, &mut f, &mut c.urls);
                if let Some(d) = child.elements().find(|e| e.name == "desc") {
                    let t = text_of(d);
                    if !t.trim().is_empty() {
                        c.texts.push(t);
                    }
                }
                if f.name.is_some() || f.hash.is_some() {
                    c.files.push(f);
                }
            }
            "reference"
                if child.ns == ns::REFERENCE && child.elements().any(|e| e.ns == ns::SIMS) =>
            {
                let mut f = FileRef::default();
                walk_file(child, 0, &mut f, &mut c.urls);
                c.files.push(f);
            }
            "file-sharing" if child.ns == ns::SFS => {
                let mut f = FileRef::default();
                walk_file(child, 0, &mut f, &mut c.urls);
                c.files.push(f);
            }
            _ => {}
        }
    }
    c
}

/// Text that looks machine-made: a bot command with arguments (`!ddos 10.0.0.1`,
/// `/join #x`), or a long opaque token. `/me` actions are human.
fn machine_like_text(text: &str) -> bool {
    let t = text.trim_start();
    let mut chars = t.chars();
    if let (Some(c0), Some(c1)) = (chars.next(), chars.next())
        && matches!(c0, '!' | '/' | '.' | '$' | '>' | '@')
        && c1.is_ascii_alphabetic()
    {
        let mut words = t.split_whitespace();
        let cmd = words.next().unwrap_or("");
        if !cmd.eq_ignore_ascii_case("/me") && words.next().is_some() {
            return true;
        }
    }
    t.split_whitespace().any(|w| {
        w.len() >= 24
            && !w.contains("://")
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-'))
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A content finding (signature, blocklist or lure) and its evidence.
struct ContentHit {
    finding: Finding,
    action: Action,
}

/// The threat-defense pipeline. `Send + Sync`; share it in an `Arc`.
pub struct Guard {
    config: GuardConfig,
    classifier: url::Classifier,
    engines: Vec<Arc<dyn Scanner>>,
    blocklists: RwLock<Arc<BlocklistSet>>,
    outbreak: Mutex<Outbreak>,
    /// Outbound data-loss patterns; `Err` (a custom pattern that does not compile) holds
    /// every outbound message: fail closed.
    dlp: Result<dlp::Dlp, String>,
    flagged: Mutex<HashSet<String>>,
    scan_timeout: Duration,
    /// Files behind this server's upload URLs (see [`uploads`]).
    uploads: uploads::ResolverSlot,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Guard {
    /// A guard with its engines (scanned in order; the first match wins) and blocklists.
    pub fn new(
        config: GuardConfig,
        engines: Vec<Arc<dyn Scanner>>,
        blocklists: BlocklistSet,
    ) -> Self {
        let l = &config.lure;
        let classifier = url::Classifier::new(url::ClassifierSettings {
            blocked_extensions: l.blocked_extensions.clone(),
            archive_extensions: l.archive_extensions.clone(),
            block_ip_literals: l.block_ip_literals,
            allow_private_ip_literals: l.allow_private_ip_literals,
            block_shorteners: l.block_shorteners,
            shorteners: l.shorteners.clone(),
            check_lookalikes: l.check_lookalikes,
            protected_domains: config.brand_domains.clone(),
            trusted_domains: config.trusted_domains.clone(),
        });
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let rp = |enabled, threshold: usize, window, action| outbreak::RuleParams {
            enabled,
            threshold: threshold.max(1),
            window_ms: ms(window),
            action,
        };
        let params = outbreak::Params {
            blast: rp(
                config.blast.enabled,
                config.blast.threshold,
                config.blast.window_secs,
                config.blast.action,
            ),
            auto_reply: rp(
                config.auto_reply.enabled,
                config.auto_reply.threshold,
                config.auto_reply.window_secs,
                config.auto_reply.action,
            ),
            reply_within_ms: ms(config.auto_reply.reply_within_secs),
            auto_reply_text: config.auto_reply.text_only,
            epidemic: rp(
                config.epidemic.enabled,
                config.epidemic.threshold,
                config.epidemic.window_secs,
                config.epidemic.action,
            ),
            room_bots: rp(
                config.room_bots.enabled,
                config.room_bots.threshold,
                config.room_bots.window_secs,
                config.room_bots.action,
            ),
            max_tracked: config.max_tracked,
        };
        Guard {
            scan_timeout: Duration::from_millis(config.scan_timeout_ms.max(1)),
            classifier,
            engines,
            blocklists: RwLock::new(Arc::new(blocklists)),
            outbreak: Mutex::new(Outbreak::new(params)),
            dlp: dlp::Dlp::new(&config.dlp).map_err(|e| e.to_string()),
            flagged: Mutex::new(HashSet::new()),
            uploads: uploads::ResolverSlot::default(),
            config,
        }
    }

    /// The settings this guard runs with.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Replace the blocklists (reload). Messages in flight finish with the old set.
    pub fn set_blocklists(&self, b: BlocklistSet) {
        let mut slot = self
            .blocklists
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(b);
    }

    fn blocklists(&self) -> Arc<BlocklistSet> {
        self.blocklists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Accounts this guard has returned `Quarantine` for (since start or [`Guard::unflag`]).
    pub fn flagged_accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.flagged).iter().cloned().collect();
        v.sort();
        v
    }

    /// Forget that an account was flagged (after an operator released it).
    pub fn unflag(&self, account: &str) {
        lock(&self.flagged).remove(account);
    }

    /// Inspect a stanza on its way from `from` to `to` (see the crate docs). Only
    /// `<message/>` stanzas carry content; anything else, and messages without content
    /// (chat states, receipts), are allowed at near-zero cost.
    pub async fn inspect(
        &self,
        from: &Jid,
        to: &Jid,
        room: Option<&Jid>,
        stanza: &Element,
    ) -> Result<Verdict, GuardError> {
        self.inspect_at(from, to, room, stanza, now_ms()).await
    }

    /// [`Guard::inspect`] at a given time (Unix ms), for tests and replays.
    pub async fn inspect_at(
        &self,
        from: &Jid,
        to: &Jid,
        room: Option<&Jid>,
        stanza: &Element,
        at_ms: i64,
    ) -> Result<Verdict, GuardError> {
        if !self.config.enabled || stanza.name != "message" {
            return Ok(Verdict::Allow);
        }
        let content = extract(stanza);
        if content.is_empty() {
            return Ok(Verdict::Allow);
        }
        let mut hit: Option<ContentHit> = None;
        let mut keys: Vec<PayloadKey> = Vec::new();

        // 0. Data-loss prevention, on messages leaving the company.
        if self.config.dlp.enabled && !self.is_company_domain(to.domain()) {
            let dlp = self.dlp.as_ref().map_err(|e| GuardError::Config(e.clone()))?;
            if let Some(m) = content.texts.iter().find_map(|t| dlp.find(t)) {
                hit = Some(ContentHit {
                    finding: Finding {
                        rule: m.rule,
                        reason: format!(
                            "blocked: the message contains {} and is addressed outside the company ({})",
                            m.what,
                            to.domain()
                        ),
                        evidence: Evidence {
                            url: None,
                            signature: Some(format!("dlp:{}", m.masked)),
                            ..Evidence::default()
                        },
                    },
                    action: self.config.dlp.action,
                });
            }
        }

        // 1. Signatures on the text.
        for t in &content.texts {
            if t.len() > self.config.max_scan_bytes {
                return Err(GuardError::TooLarge {
                    size: t.len(),
                    max: self.config.max_scan_bytes,
                });
            }
            if let Some((engine, sig)) = self.scan_engines(t.as_bytes()).await? {
                let signature = format!("{engine}:{sig}");
                keys.push(PayloadKey {
                    kind: KeyKind::Signature,
                    hash: fingerprint::hash_bytes(3, signature.as_bytes()),
                    label: Arc::from(signature.as_str()),
                });
                hit = Some(ContentHit {
                    finding: Finding {
                        rule: "signature".into(),
                        reason: format!("blocked: message matches malware signature {sig}"),
                        evidence: Evidence {
                            signature: Some(signature),
                            ..Evidence::default()
                        },
                    },
                    action: Action::Block,
                });
                break;
            }
        }

        // 2. Links: blocklists, lures; untrusted ones become behavioural keys.
        // Fetched on the first link only: most messages carry none.
        let mut blocklists: Option<Arc<BlocklistSet>> = None;
        let mut seen_urls: Vec<String> = Vec::new();
        let mut trusted_link = false;
        // Links in the text are found once: the link rules here and the text fingerprint
        // below both use them (no allocation when there are none).
        let text_links: Vec<&str> = content.texts.iter().flat_map(|t| url::extract(t)).collect();
        let explicit = content.urls.iter().map(|u| &**u);
        for raw in explicit.chain(text_links.iter().copied()) {
            // Links to our own uploads stand for the file behind them (see `uploads`).
            if self.upload_link(raw, &mut seen_urls, &mut hit, &mut keys).await? {
                continue;
            }
            let Some(u) = url::Url::parse(raw) else {
                continue;
            };
            let key = u.key();
            if seen_urls.contains(&key) || seen_urls.len() >= 32 {
                continue;
            }
            seen_urls.push(key.clone());
            let trusted = self.classifier.is_trusted(&u);
            trusted_link |= trusted;
            if hit.is_none() {
                if let Some(m) = blocklists.get_or_insert_with(|| self.blocklists()).check(&u) {
                    let entry = match m {
                        BlockMatch::Host(h) => h,
                        BlockMatch::Url(k) => k,
                    };
                    hit = Some(ContentHit {
                        finding: Finding {
                            rule: "blocklist".into(),
                            reason: format!("blocked: link to a known malicious site ({entry})"),
                            evidence: Evidence {
                                url: Some(key.clone()),
                                ..Evidence::default()
                            },
                        },
                        action: Action::Block,
                    });
                } else if self.config.lure.enabled
                    && let Some(l) = self.classifier.classify(&u)
                {
                    hit = Some(ContentHit {
                        finding: Finding {
                            rule: l.rule().into(),
                            reason: l.reason(),
                            evidence: Evidence {
                                url: Some(key.clone()),
                                ..Evidence::default()
                            },
                        },
                        action: self.config.lure.action,
                    });
                }
            }
            if !trusted {
                keys.push(PayloadKey {
                    kind: KeyKind::Url,
                    hash: fingerprint::hash_bytes(1, key.as_bytes()),
                    label: Arc::from(key.as_str()),
                });
            }
        }

        // 3. Shared files: names and hashes.
        for f in &content.files {
            if hit.is_none()
                && self.config.lure.enabled
                && let Some(name) = &f.name
                && let Some((ext, double)) = self.classifier.executable_name(name)
            {
                let l = url::Lure::Executable {
                    ext,
                    file: name.to_string(),
                    double,
                };
                let reason = l.reason().replace("link to an", "file is an");
                hit = Some(ContentHit {
                    finding: Finding {
                        rule: l.rule().into(),
                        reason,
                        evidence: Evidence {
                            file_hash: f.hash.clone(),
                            ..Evidence::default()
                        },
                    },
                    action: self.config.lure.action,
                });
            }
            if let Some(h) = &f.hash {
                keys.push(PayloadKey {
                    kind: KeyKind::File,
                    hash: fingerprint::hash_bytes(2, h.as_bytes()),
                    label: Arc::from(h.as_str()),
                });
            }
        }

        // 4. Behaviour.
        let from_bare = from.bare_str();
        let to_bare = to.bare_str();
        let room_str = room.map(|r| r.bare_str());
        let machine_like = room.is_some()
            && (!keys.is_empty() || content.texts.iter().any(|t| machine_like_text(t)));
        // A message about a trusted (company) link is not fingerprinted by its text either:
        // forwarding an intranet announcement along the team is ordinary.
        let text_fp = if !(trusted_link && keys.is_empty()) {
            let mut name_buf: [&str; 8] = [""; 8];
            let mut n_names = 0;
            if room.is_none()
                && let Some(node) = to.node()
            {
                for part in fingerprint::name_parts(node).take(name_buf.len()) {
                    name_buf[n_names] = part;
                    n_names += 1;
                }
            }
            let names = &name_buf[..n_names];
            let min = if machine_like {
                4
            } else {
                self.config.min_text_chars
            };
            let fp = match content.texts.len() {
                0 => fingerprint::text_fingerprint("", names),
                1 => fingerprint::text_fingerprint_with_links(
                    &content.texts[0],
                    names,
                    text_links.iter().copied(),
                ),
                _ => fingerprint::text_fingerprint(&content.texts.join("\n"), names),
            };
            fp.filter(|f| f.chars >= min)
        } else {
            None
        };
        let delivered = hit.as_ref().is_none_or(|h| h.action == Action::Log);
        let detection = {
            let mut ob = lock(&self.outbreak);
            let (text_key, text_fresh) = match text_fp {
                Some(f) => {
                    let (canonical, fresh) = ob.cluster_text_fresh(f.simhash);
                    (Some(outbreak::text_key(canonical)), fresh)
                }
                None => (None, false),
            };
            ob.observe(&Observation {
                from: from_bare,
                to: to_bare,
                room: room_str,
                at_ms,
                keys: &keys,
                text: text_key.as_ref(),
                text_fresh,
                machine_like,
                has_content: true,
                delivered,
            })
        };

        if let Some(d) = detection {
            let action = d.action;
            let finding = self.outbreak_finding(d, hit.as_ref().map(|h| &h.finding));
            match action {
                Action::Quarantine => {
                    let mut f = lock(&self.flagged);
                    if f.len() < 100_000 {
                        f.insert(from_bare.to_owned());
                    }
                    return Ok(Verdict::Quarantine(finding));
                }
                Action::Block => return Ok(Verdict::Block(finding)),
                Action::Log => {
                    tracing::warn!(rule = %finding.rule, account = from_bare, reason = %finding.reason, "guard rule fired (log only)")
                }
            }
        }
        Ok(match hit {
            None => Verdict::Allow,
            Some(h) => match h.action {
                Action::Block => Verdict::Block(h.finding),
                Action::Quarantine => {
                    lock(&self.flagged).insert(from_bare.to_owned());
                    Verdict::Quarantine(h.finding)
                }
                Action::Log => {
                    tracing::warn!(rule = %h.finding.rule, account = from_bare, reason = %h.finding.reason, "guard rule fired (log only)");
                    Verdict::Allow
                }
            },
        })
    }

    fn outbreak_finding(&self, d: Detection, content: Option<&Finding>) -> Finding {
        let what = match d.key.kind {
            KeyKind::Url => "link",
            KeyKind::File => "file",
            KeyKind::Signature => "malware",
            KeyKind::Text => "message",
        };
        let verb = match d.action {
            Action::Quarantine => "quarantined",
            _ => "blocked",
        };
        let mut reason = match d.rule {
            Rule::Blast => format!(
                "{verb}: the same {what} was sent to {} people within {} minutes (contact-list worm)",
                d.count,
                self.config.blast.window_secs.div_ceil(60)
            ),
            Rule::AutoReply => format!(
                "{verb}: the same {what} was sent automatically in reply to {} people (auto-reply worm)",
                d.count
            ),
            Rule::Epidemic => format!(
                "{verb}: this {what} is spreading from account to account ({} accounts)",
                d.count
            ),
            Rule::RoomBots => format!(
                "{verb}: {} accounts posted the same machine-like {what} in this room (bots)",
                d.count
            ),
        };
        let mut evidence = content.map(|c| c.evidence.clone()).unwrap_or_default();
        if let Some(c) = content {
            reason.push_str("; ");
            reason.push_str(&c.reason);
        }
        match d.key.kind {
            KeyKind::Url => {
                evidence.url.get_or_insert_with(|| d.key.label.to_string());
            }
            KeyKind::File => {
                evidence
                    .file_hash
                    .get_or_insert_with(|| d.key.label.to_string());
            }
            KeyKind::Signature => {
                evidence
                    .signature
                    .get_or_insert_with(|| d.key.label.to_string());
            }
            KeyKind::Text => evidence.fingerprint = Some(d.key.display()),
        }
        evidence.chain = d.chain;
        evidence.accounts = d.accounts;
        Finding {
            rule: d.rule.id().into(),
            reason,
            evidence,
        }
    }

    /// Is `domain` one of the company's (`trusted_domains`) or a subdomain of one?
    fn is_company_domain(&self, domain: &str) -> bool {
        self.config.trusted_domains.iter().any(|d| {
            domain.eq_ignore_ascii_case(d)
                || (domain.len() > d.len()
                    && domain.as_bytes()[domain.len() - d.len() - 1] == b'.'
                    && domain.get(domain.len() - d.len()..).is_some_and(|t| t.eq_ignore_ascii_case(d)))
        })
    }

    /// Run the engines in order over `data`, bounded by `scan_timeout_ms` in total.
    async fn scan_engines(&self, data: &[u8]) -> Result<Option<(String, String)>, GuardError> {
        if self.engines.is_empty() {
            return Ok(None);
        }
        // Engines that can answer in process (YARA on short inputs) answer first, with no
        // future, box or timer; the others (clamd, large inputs) run under the deadline.
        let mut pending: Vec<&Arc<dyn Scanner>> = Vec::new();
        for e in &self.engines {
            match e.scan_now(data) {
                Some(Ok(Some(sig))) => return Ok(Some((e.name().to_owned(), sig))),
                Some(Ok(None)) => {}
                Some(Err(err)) => return Err(err),
                None => pending.push(e),
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        let run = async {
            for e in pending {
                if let Some(sig) = e.scan(data).await? {
                    return Ok(Some((e.name().to_owned(), sig)));
                }
            }
            Ok(None)
        };
        deadline::within(self.scan_timeout, run)
            .await
            .map_err(|_| GuardError::Timeout)?
    }

    /// Scan file bytes (uploads, `rampart scan`): signatures, then the file name.
    pub async fn scan_file(&self, name: &str, data: &[u8]) -> Result<Verdict, GuardError> {
        if !self.config.enabled {
            return Ok(Verdict::Allow);
        }
        if data.len() > self.config.max_scan_bytes {
            return Err(GuardError::TooLarge {
                size: data.len(),
                max: self.config.max_scan_bytes,
            });
        }
        let hash = format!("sha-256:{}", hex(&Sha256::digest(data)));
        if let Some((engine, sig)) = self.scan_engines(data).await? {
            return Ok(Verdict::Block(Finding {
                rule: "signature".into(),
                reason: format!("blocked: file matches malware signature {sig}"),
                evidence: Evidence {
                    signature: Some(format!("{engine}:{sig}")),
                    file_hash: Some(hash),
                    ..Evidence::default()
                },
            }));
        }
        if self.config.lure.enabled
            && let Some((ext, double)) = self.classifier.executable_name(name)
        {
            let l = url::Lure::Executable {
                ext,
                file: name.to_owned(),
                double,
            };
            if self.config.lure.action != Action::Log {
                return Ok(Verdict::Block(Finding {
                    rule: l.rule().into(),
                    reason: l.reason().replace("link to an", "file is an"),
                    evidence: Evidence {
                        file_hash: Some(hash),
                        ..Evidence::default()
                    },
                }));
            }
        }
        Ok(Verdict::Allow)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests;
